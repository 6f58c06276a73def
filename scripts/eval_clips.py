"""The clips of the evaluation sets that are not in ../shared, extracted from git clones.

    python scripts/eval_clips.py --clones DIR --out DIR [--set eval3|eval2]

``DIR`` holds clones of the repositories below (each under its GitHub name with ``+`` for
``/``, e.g. ``OpenTalker+video-retalking``, or its plain repository name); every clip is
taken at the listed commit with ``git show`` and checked against the first 16 hex digits of
its SHA-256, so a set means the same bytes wherever it is rebuilt. The clips show real
people: test material only, never copied into this repository (docs/generator.md,
"Evaluation split"). Prints the ``--clips`` arguments for ``scripts/ida_gate.py run``.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
from pathlib import Path

LIVEPORTRAIT = ("KwaiVGI/LivePortrait", "1986663be3b6902605d32200c01f4bfd36cda83d")
RETALKING = ("OpenTalker/video-retalking", "d32e8e58248255e2d243eeaf3cba545dbe505ca8")
VEXPRESS = ("tencent-ailab/V-Express", "6814f7db362dc9e26644162034b4d28c5277651a")
TPSMM = ("yoyo-nb/Thin-Plate-Spline-Motion-Model", "c616878812c9870ed81ac72561be2676fd7180e2")

# name: ((repository, commit), path in the repository, SHA-256 prefix)
SETS: dict[str, dict[str, tuple[tuple[str, str], str, str]]] = {
    "eval3": {
        "tps_driving": (TPSMM, "assets/driving.mp4", "711df5fceb4ab24b"),
        "vr_1": (RETALKING, "examples/face/1.mp4", "60fb69b90af2edbc"),
        "vr_2": (RETALKING, "examples/face/2.mp4", "f7d30499bc380f4d"),
        "vr_3": (RETALKING, "examples/face/3.mp4", "707d58aa3511138b"),
        "vr_4": (RETALKING, "examples/face/4.mp4", "414be3ad61f09432"),
        "vr_5": (RETALKING, "examples/face/5.mp4", "f664ca850492bbe1"),
        "vx_radio": (VEXPRESS, "scripts/prepare_dataset/RD_Radio10_0_clip_0.mp4", "c88ab4283ee68b03"),
    },
    "eval2": {
        "lp_d0": (LIVEPORTRAIT, "assets/examples/driving/d0.mp4", "63f6f9962e1fdf6e"),
        "lp_d13": (LIVEPORTRAIT, "assets/examples/driving/d13.mp4", "d03e39c28323cde1"),
        "lp_d6": (LIVEPORTRAIT, "assets/examples/driving/d6.mp4", "00e3ea79bbf28cbd"),
        "lp_d9": (LIVEPORTRAIT, "assets/examples/driving/d9.mp4", "9a414aa1d547be35"),
        "lp_s13": (LIVEPORTRAIT, "assets/examples/source/s13.mp4", "a6e4a80cc0eb856d"),
        "lp_s18": (LIVEPORTRAIT, "assets/examples/source/s18.mp4", "47cc9cdc93adf362"),
        "lp_s20": (LIVEPORTRAIT, "assets/examples/source/s20.mp4", "90a45bf880e20b42"),
        "lp_s29": (LIVEPORTRAIT, "assets/examples/source/s29.mp4", "6e474b846e008461"),
        "lp_s32": (LIVEPORTRAIT, "assets/examples/source/s32.mp4", "e4e1da5a4447fad1"),
    },
}  # fmt: skip


def clone_dir(clones: Path, repo: str) -> Path:
    """The clone of ``repo`` ("owner/name") under ``clones``, by either naming."""
    for cand in (clones / repo.replace("/", "+"), clones / repo.split("/")[1]):
        if (cand / ".git").exists() or (cand / "HEAD").exists() or (cand / "repo").exists():
            return cand / "repo" if (cand / "repo").exists() else cand
    raise SystemExit(f"eval_clips: no clone of {repo} under {clones} (git clone it there)")


def extract(name: str, clones: Path, out: Path, set_name: str) -> Path:
    (repo, commit), path, digest = SETS[set_name][name]
    data = subprocess.run(
        ["git", "-C", str(clone_dir(clones, repo)), "show", f"{commit}:{path}"],
        capture_output=True,
        check=False,
    )
    if data.returncode != 0:
        raise SystemExit(f"eval_clips: {repo}@{commit[:8]} has no {path}")
    got = hashlib.sha256(data.stdout).hexdigest()[:16]
    if got != digest:
        raise SystemExit(f"eval_clips: {name}: SHA-256 {got}, expected {digest}")
    dst = out / f"{name}.mp4"
    dst.write_bytes(data.stdout)
    return dst


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clones", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--set", choices=sorted(SETS), default="eval3")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    paths = [extract(n, args.clones, args.out, args.set) for n in SETS[args.set]]
    print(" ".join(str(x) for x in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
