"""`streamanon train`: config parsing, and a tiny real run on real faces that resumes."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
import torch

from streamanon.synth.cli import train_main
from streamanon.synth.train import TrainConfigError, load_config
from tests.conftest import needs_shared


def _write(path, cfg: dict) -> str:
    path.write_text(json.dumps(cfg))
    return str(path)


@pytest.mark.parametrize(
    "cfg, msg",
    [
        ({"data": {"faces": ["x"]}, "trian": {}}, "unknown sections"),
        ({"data": {"faces": ["x"]}, "train": {"stepz": 3}}, "unknown keys in \\[train\\]"),
        ({"data": {}}, "needs at least one"),
        ({"data": {"faces": ["x"]}, "model": {"size": 100}}, "size must be 128 or 256"),
    ],
)
def test_bad_configs_are_rejected(tmp_path, cfg, msg):
    with pytest.raises(ValueError, match=msg):
        load_config(_write(tmp_path / "c.json", cfg))


def test_missing_config(tmp_path):
    with pytest.raises(TrainConfigError, match="does not exist"):
        load_config(tmp_path / "none.toml")


def test_shipped_default_config_parses():
    cfg = load_config("configs/generator_128.toml")
    assert cfg.model.size == 128 and cfg.model.geometry_channels == 10
    assert cfg.loss.identity == 2.0 and cfg.loss.beta1 == 0.6


@pytest.mark.slow
def test_tiny_training_run_logs_samples_resumes_and_evaluates(tmp_path):
    src = needs_shared("faces", "synthetic", "sfhq")
    faces = tmp_path / "faces"
    faces.mkdir()
    for f in sorted(src.glob("*.jpg"))[20:25]:
        shutil.copy(f, faces)
    run = tmp_path / "run"
    cfg = {
        "model": {"widths": [8, 16, 16, 16, 16], "encoder_widths": [8, 8, 16, 16, 32, 128]},
        "train": {
            "out_dir": str(run), "steps": 2, "batch_size": 2, "psi": "off", "threads": 1,
            "sample_every": 1, "checkpoint_every": 1, "eval_faces": 1,
        },
        "data": {"faces": [str(faces)], "holdout": 1, "cache_dir": str(tmp_path / "cache")},
    }  # fmt: skip
    path = _write(tmp_path / "c.json", cfg)
    assert train_main([path]) == 0
    rows = list(csv.DictReader((run / "log.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2]
    assert [int(r["cycle"]) for r in rows] == [0, 1]  # 1:1 schedule
    for r in rows:
        for k in ("adversarial", "feature_matching", "appearance", "background", "d"):
            assert r[k] != "" and float(r[k]) == float(r[k])  # logged, not NaN
    assert (run / "samples" / "step_000002.png").is_file()
    m = json.loads((run / "metrics.json").read_text())
    for mode in ("swap", "ifa"):
        if "skipped" not in m[mode]:
            assert 0.0 <= m[mode]["anonymized_detection_rate"] <= 1.0
            assert -1.0 <= m[mode]["reconstruction_ssim"] <= 1.0
    assert (run / "generator.onnx").is_file()
    # resume: one more step continues from the checkpoint, without re-logging old steps
    assert train_main([path, "--steps", "3"]) == 0
    rows = list(csv.DictReader((run / "log.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    ck = torch.load(str(run / "ckpt.pt"), weights_only=False)
    assert ck["step"] == 3
