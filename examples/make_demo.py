"""Compose examples/demo.mp4: synthetic faces (SFHQ, MIT) moving over a drawn street scene.

Everything in the clip is legal to ship: the faces are synthetic (examples/faces/, see
examples/README.md for provenance), the background is drawn here, the audio is a tone.
The clip exercises what the anonymizer must handle: faces entering and leaving the frame,
crossing each other, changing size, and one face briefly hidden behind a passing pole.

    python examples/make_demo.py [-o examples/demo.mp4] [--seconds 6] [--size 1280x720]
"""

from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

HERE = Path(__file__).resolve().parent


def draw_background(w: int, h: int) -> np.ndarray:
    """A simple street: sky gradient, building blocks with windows, a road."""
    img = np.zeros((h, w, 3), np.uint8)
    sky = np.linspace(235, 170, h // 2).astype(np.uint8)
    img[: h // 2] = np.stack([sky, sky - 10, sky - 60], axis=1)[:, None, :].clip(0, 255)
    rng = np.random.default_rng(7)
    x = 0
    while x < w:
        bw, bh = int(rng.integers(120, 260)), int(rng.integers(h // 4, h // 2))
        colour = [int(c) for c in rng.integers(60, 160, 3)]
        cv2.rectangle(img, (x, h // 2 - bh + 80), (x + bw, int(h * 0.62)), colour, -1)
        for wy in range(h // 2 - bh + 100, int(h * 0.58), 40):
            for wx in range(x + 12, x + bw - 20, 34):
                cv2.rectangle(img, (wx, wy), (wx + 16, wy + 22), (200, 220, 230), -1)
        x += bw + 6
    img[int(h * 0.62) :] = (70, 72, 75)
    for lx in range(0, w, 160):
        cv2.rectangle(img, (lx, int(h * 0.8)), (lx + 80, int(h * 0.8) + 10), (230, 230, 230), -1)
    return img


def soft_mask(size: int) -> np.ndarray:
    m = np.zeros((size, size), np.float32)
    cv2.ellipse(m, (size // 2, size // 2), (int(size * 0.42), int(size * 0.49)), 0, 0, 360, 1.0, -1)
    return cv2.GaussianBlur(m, (0, 0), size * 0.04)[..., None]


def paste(frame: np.ndarray, face: np.ndarray, cx: float, cy: float, size: int) -> None:
    f = cv2.resize(face, (size, size), interpolation=cv2.INTER_AREA)
    m = soft_mask(size)
    h, w = frame.shape[:2]
    x0, y0 = int(cx - size / 2), int(cy - size / 2)
    fx0, fy0 = max(0, -x0), max(0, -y0)
    x1, y1 = min(w, x0 + size), min(h, y0 + size)
    if x1 <= max(x0, 0) or y1 <= max(y0, 0):
        return
    roi = frame[max(y0, 0) : y1, max(x0, 0) : x1].astype(np.float32)
    fs = f[fy0 : fy0 + roi.shape[0], fx0 : fx0 + roi.shape[1]].astype(np.float32)
    ms = m[fy0 : fy0 + roi.shape[0], fx0 : fx0 + roi.shape[1]]
    frame[max(y0, 0) : y1, max(x0, 0) : x1] = (roi * (1 - ms) + fs * ms).astype(np.uint8)


def compose(out: Path, seconds: float = 6.0, width: int = 1280, height: int = 720, fps: int = 25) -> None:
    faces = [cv2.imread(str(p)) for p in sorted((HERE / "faces").glob("*.jpg"))]
    if not faces:
        raise SystemExit("examples/faces/ has no faces")
    bg = draw_background(width, height)
    n = int(seconds * fps)
    # (face index, start x, end x, y, size start, size end) in relative units
    paths = [
        (0, -0.1, 1.1, 0.40, 150, 170),
        (1, 1.1, -0.1, 0.45, 120, 130),
        (2, 0.25, 0.30, 0.35, 200, 230),
        (3, 0.75, 0.70, 0.42, 90, 110),
    ]
    sample_rate = 44100
    with av.open(str(out), "w") as c:
        vs = c.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.options = {"crf": "26", "preset": "medium"}
        aus = c.add_stream("aac", rate=sample_rate)
        aus.layout = "mono"
        c.metadata["title"] = "streamanon demo"
        c.metadata["location"] = "+48.8584+002.2945/"  # a fake GPS tag the tool must strip
        for i in range(n):
            t = i / max(1, n - 1)
            frame = bg.copy()
            for k, x0, x1, y, s0, s1 in paths:
                cx = (x0 + (x1 - x0) * t) * width
                cy = (y + 0.02 * np.sin(i / 6 + k)) * height
                paste(frame, faces[k % len(faces)], cx, cy, int(s0 + (s1 - s0) * t))
            # a pole passing in front of face 2 for a few frames: the tracker must coast
            px = int((0.1 + 0.5 * t) * width)
            cv2.rectangle(frame, (px - 40, 0), (px + 40, height), (40, 40, 45), -1)
            vf = av.VideoFrame.from_ndarray(frame, format="bgr24")
            vf.pts = i
            vf.time_base = Fraction(1, fps)
            for p in vs.encode(vf):
                c.mux(p)
        samples = int(seconds * sample_rate)
        tone = (0.1 * np.sin(2 * np.pi * 440 * np.arange(samples) / sample_rate)).astype(np.float32)
        for s in range(0, samples, 1024):
            af = av.AudioFrame.from_ndarray(tone[None, s : s + 1024], format="fltp", layout="mono")
            af.sample_rate = sample_rate
            af.pts = s
            for p in aus.encode(af):
                c.mux(p)
        for st in (vs, aus):
            for p in st.encode(None):
                c.mux(p)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", default=str(HERE / "demo.mp4"))
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--size", default="1280x720")
    a = ap.parse_args()
    w, h = (int(v) for v in a.size.lower().split("x"))
    compose(Path(a.output), a.seconds, w, h)
    print(a.output)


if __name__ == "__main__":
    main()
