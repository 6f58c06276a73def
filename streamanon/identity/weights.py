"""Ψ's weights: dlib's ResNet converted to torch tensors at first use, never shipped.

The installed ``dlib_face_recognition_resnet_model_v1.dat`` is converted by the deterministic
converter (`identity.convert`) into the model cache (`streamanon.models.cache_dir`), named by
the ``.dat``'s sha256 so a different dlib model gets its own file, and written atomically
(temporary file + rename: concurrent first uses never see half a file). When the cache cannot
be written the weights are converted in memory instead (~0.2 s on a 2-core CPU).
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import threading
from pathlib import Path

from streamanon import models
from streamanon.identity.convert import convert, convert_file, default_dat_path

log = logging.getLogger(__name__)

RECOGNIZER_STEM = "recognizer_dlib_resnet_v1"


def _dat_digest(dat: Path) -> str:
    return hashlib.sha256(dat.read_bytes()).hexdigest()[:16]


def recognizer_weights_path(dat: Path | None = None) -> Path:
    """The cache file of Ψ's weights for the installed ``.dat`` (may not exist yet)."""
    dat = dat or models.dlib_file(models.RESNET)
    return models.cache_dir() / f"{RECOGNIZER_STEM}.{_dat_digest(dat)}.safetensors"


def build_recognizer_weights(dat: Path | None = None) -> Path:
    """Convert the installed dlib ResNet into the cache (atomically) unless it is there.

    Raises OSError when the cache directory cannot be written.
    """
    dat = dat or models.dlib_file(models.RESNET)
    out = recognizer_weights_path(dat)
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    # A unique temporary name per process and thread: concurrent first uses never clash, and
    # os.replace makes the finished file appear in one step.
    tmp = out.with_name(f".{out.name}.{os.getpid()}.{threading.get_ident()}.partial")
    try:
        convert_file(dat, tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("built %s from %s", out, dat.name)
    return out


def recognizer_state_dict() -> dict:
    """Ψ's weights as numpy arrays: from the cache, built there at first use; in memory when
    the cache cannot be written."""

    def build() -> dict:
        from safetensors.numpy import load_file

        try:
            return load_file(str(build_recognizer_weights()))
        except OSError as exc:
            where = models.cache_dir()
            log.warning("model cache %s not writable (%s); converting in memory", where, exc)
            return convert(models.dlib_file(models.RESNET).read_bytes())

    return models.cached("psi/state_dict", build)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    dat = Path(argv[0]) if argv else default_dat_path()
    if len(argv) > 1:
        out = Path(argv[1])
        sha = convert_file(dat, out)
    else:  # the file streamanon itself uses, in the model cache
        out = build_recognizer_weights(dat)
        sha = hashlib.sha256(dat.read_bytes()).hexdigest()
    print(f"{dat} (sha256 {sha}) -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
