"""Per draw: which (clip, seed) renders does FaceNet re-identify, and what Ψ saw of them.

    python scripts/draw_reid.py run --clips d3,d10 --seeds 0,1,2 --out runs/draws.json
    python scripts/draw_reid.py score runs/draws.json [runs/other.json ...]

`run` anonymizes the first ``--frames`` frames of each clip with ``--method`` under each seed
(each seed is another delegate draw for the same person) and, on every ``--stride``-th frame,
measures per face the distances between the person (original frame), the render (output
frame, same box) and the drawn appearance delegate (its bank crop), with dlib's ResNet (Ψ,
the method's own recognizer) and FaceNet (another family, the judge). `score` prints how
well each Ψ signal predicts FaceNet's re-identification (AUC) and one line per draw.

Clips are names of ``scripts/ida_gate.py`` (d3, d10, d11…, hamilton) or video paths. Use
development clips only (docs/generator.md, "Evaluation split"): this is for finding causes.
Measured with it: docs/generator.md, "Eighth session".
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from fractions import Fraction
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

FACENET_REID = 1.01  # FaceNet's threshold in the gate (`eval.facenet`)
# (field, sign): sign +1 when a larger value means "re-identified"
SIGNALS = (
    ("psi_person", -1),  # Ψ(render, person): what the method verifies
    ("psi_delegate", 1),  # Ψ(render, delegate): the delegate's identity lost
    ("psi_pd", -1),  # Ψ(person, delegate)
    ("fn_delegate", 1),  # FaceNet(render, delegate), analysis only
)


def _box_of(points: np.ndarray) -> np.ndarray:
    (x0, y0), (x1, y1) = points.min(0), points.max(0)
    return np.array([[x0, y0, x1, y1]], np.float32)


def _dist(embeddings: tuple, x: int, y: int) -> float:
    return float(np.linalg.norm(embeddings[x] - embeddings[y]))


def measure(clip: str, seed: int, method: str, frames: int, stride: int, judges) -> list[dict]:
    """One row per rendered face on the sampled frames of ``clip`` under ``seed``."""
    from ida_gate import clip_name, clip_path

    from streamanon.anonymizer import Anonymizer, Options
    from streamanon.io.video import VideoReader
    from streamanon.types import Frame

    facenet, dlib = judges
    anon = Anonymizer(Options(method=method, seed=seed))
    samples = []
    with VideoReader(clip_path(clip), audio=False) as reader:
        for i, f in zip(range(frames), reader, strict=False):
            original = f.image.copy()
            frame = anon.apply(anon.track(Frame(f.image, i, i * 40, Fraction(1, 1000))))
            if i % stride == stride // 2 and len(frame.faces):
                samples.append((i, original, frame.image.copy(), frame.faces))
    method_obj = anon.face_anonymizer
    ids = getattr(method_obj, "ids", None) or method_obj.swap.ids
    rows = []
    for i, original, output, faces in samples:
        for box, tid in zip(faces.xyxy, faces.track_id, strict=True):
            st = ids.get(int(tid))
            if st is None or st.covered:
                continue  # covered by the fallback: nothing rendered to judge
            a = int(st.delegates.appearance_index)
            crop, crop_box = ids.bank.crop(a, 128), _box_of(ids.bank.landmarks_at(a, 128))
            b = box[None].astype(np.float32)
            emb = {
                name: (j.embed(original, b)[0], j.embed(output, b)[0], j.embed(crop, crop_box)[0])
                for name, j in (("fn", facenet), ("psi", dlib))
            }
            fn, psi = emb["fn"], emb["psi"]  # (person, render, delegate) each
            rows.append({
                "clip": clip_name(clip), "seed": seed, "frame": i, "track": int(tid),
                "delegate": a, "draw": st.draw, "verified": st.verified_distance,
                "fn_person": _dist(fn, 0, 1), "fn_delegate": _dist(fn, 1, 2),
                "fn_pd": _dist(fn, 0, 2), "psi_person": _dist(psi, 0, 1),
                "psi_delegate": _dist(psi, 1, 2), "psi_pd": _dist(psi, 0, 2),
            })  # fmt: skip
    return rows


def auc(score: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a positive scores above a negative (ties count half)."""
    pos, neg = score[positive], score[~positive]
    if not len(pos) or not len(neg):
        return float("nan")
    return float((pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean())


def score(rows: list[dict]) -> str:
    reid = np.array([r["fn_person"] < FACENET_REID for r in rows])
    draws: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        draws[(r["clip"], r["seed"])].append(r)
    lines = [f"{len(rows)} faces of {len(draws)} draws, {int(reid.sum())} re-identified by FaceNet"]
    for name, sign in SIGNALS:
        lines.append(f"AUC {name}: {auc(sign * np.array([r[name] for r in rows]), reid):.3f}")
    lines.append("clip seed delegate draw  reid/faces  Ψ(render,person) Ψ(person,delegate)")
    for (clip, seed), rs in sorted(draws.items()):
        n = sum(r["fn_person"] < FACENET_REID for r in rs)
        person, pd = (np.mean([r[k] for r in rs]) for k in ("psi_person", "psi_pd"))
        lines.append(
            f"{clip} {seed} {rs[0]['delegate']} {rs[0]['draw']}  {n}/{len(rs)}  "
            f"{person:.2f} {pd:.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--clips", required=True, help="comma-separated clip names or paths")
    r.add_argument("--seeds", default="0,1,2")
    r.add_argument("--method", default="swap", choices=("swap", "ida"))
    r.add_argument("--frames", type=int, default=64)
    r.add_argument("--stride", type=int, default=8)
    r.add_argument("--out", type=Path, required=True)
    s = sub.add_parser("score")
    s.add_argument("files", type=Path, nargs="+")
    args = ap.parse_args(argv)
    if args.cmd == "score":
        print(score([row for f in args.files for row in json.loads(f.read_text())]))
        return 0
    from ida_gate import judges as gate_judges

    dlib, facenet = gate_judges()  # the gate's two recognizers, built once
    judges = (facenet, dlib)
    rows: list[dict] = []
    for clip in args.clips.split(","):
        for seed in (int(x) for x in args.seeds.split(",")):
            rows += measure(clip, seed, args.method, args.frames, args.stride, judges)
            args.out.write_text(json.dumps(rows))  # after every draw: a kill keeps the rest
            print(f"{clip} seed {seed}: {len(rows)} faces so far", flush=True)
    print(score(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
