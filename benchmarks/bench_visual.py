"""Timing of visual clue anonymization, per new track and per frame.

    python benchmarks/bench_visual.py [IMAGE] [--repeat N]

New track: bank k-NN + IPD sampling (VAA and GSA, incl. pose pool and shape distances) +
decoding the appearance delegate's crop into Z_a + the first Ŝ_x fit.
Per frame: Ŝ_x re-fit to the current landmarks, the crop warp, and Z_g rendering.
The recognizer embedding and the landmark detector are other stages and are not counted here
(dlib's are timed once for reference). Uses the shipped bank; the query face is IMAGE, or the
Obama photo from ../shared/data, or a bank face when neither exists.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from streamanon.visual.align import align_matrix, transform_points, warp_to_crop
from streamanon.visual.bank import DelegateBank, default_bank_path
from streamanon.visual.delegates import choose_delegates, fit_geometry
from streamanon.visual.explain import face_in_image
from streamanon.visual.inputs import appearance_input, render_geometry
from streamanon.visual.ipd import track_rng

DEFAULT_IMAGE = (
    Path(__file__).resolve().parents[2] / "shared/data/faces/identities/fr_obama/obama.jpg"
)


def _ms(fn, repeat: int) -> tuple[float, float]:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.median(times)), float(np.percentile(times, 90))


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("image", nargs="?", default=str(DEFAULT_IMAGE))
    ap.add_argument("--repeat", type=int, default=200)
    args = ap.parse_args()

    t = time.perf_counter()
    bank = DelegateBank.load(default_bank_path())
    print(f"bank load (cold, {len(bank)} faces): {(time.perf_counter() - t) * 1e3:.1f} ms")

    image = cv2.imread(args.image)
    if image is not None:
        t = time.perf_counter()
        pts, emb, pose = face_in_image(image)
        print(
            f"(reference) dlib HOG + 68 landmarks + ResNet embedding: {(time.perf_counter() - t) * 1e3:.0f} ms"
        )
        m = align_matrix(pts)
        crop, s_x = warp_to_crop(image, m), transform_points(pts, m)
    else:
        print(f"{args.image} not found: using bank face 0 as the query")
        image, crop = bank.crop(0), bank.crop(0)
        pts = s_x = bank.landmarks[0].astype(np.float64)
        emb, pose = bank.embeddings[0] + 0.01, bank.pose[0]

    track = [0]

    def new_track() -> None:
        track[0] += 1
        d = choose_delegates(bank, emb, s_x, pose, track_rng(0, track[0], "delegates"))
        fit_geometry(d, s_x)

    d = choose_delegates(bank, emb, s_x, pose, track_rng(0, 0, "delegates"))
    rows = [
        ("new track: k-NN + IPD (VAA+GSA) + Z_a + first Ŝ_x", new_track),
        ("  of which Z_a (JPEG decode + mask)", lambda: bank.appearance(d.appearance_index)),
        ("per frame: Ŝ_x re-fit", lambda: fit_geometry(d, s_x)),
        ("per frame: align + warp to 128² crop", lambda: warp_to_crop(image, align_matrix(pts))),
        (
            "per frame: Z_g render (10 ch)",
            lambda: render_geometry(fit_geometry(d, s_x), crop, erase_landmarks=s_x),
        ),
        ("(if per frame) Z_a of the person's crop", lambda: appearance_input(crop, s_x)),
    ]
    for label, fn in rows:
        med, p90 = _ms(fn, args.repeat)
        print(f"{label:55s} median {med:7.3f} ms   p90 {p90:7.3f} ms")


if __name__ == "__main__":
    main()
