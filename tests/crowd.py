"""Crowd clips composed from the group photos in ../shared/data (for coverage tests and bench).

A mosaic of crowd photos is panned under a moving window (faces move across the frame, as
when people walk or the camera pans), mirrored halfway through, and written with PyAV. The
frames are deterministic, so the coverage baseline per clip and size bin is reproducible.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

# (name, output size, mosaic photos from groups/ultralight_crowd, tile size in the mosaic)
CLIPS = {
    "crowd1080": ((1920, 1080), ["11.jpg", "27.jpg", "15.jpg", "26.jpg"], (1040, 600)),
    "crowd4k": ((3840, 2160), ["26.jpg", "27.jpg", "1.jpg", "15.jpg"], (2000, 1160)),
}


def mosaic(shared: Path, photos: list[str], tile: tuple[int, int]) -> np.ndarray:
    tw, th = tile
    cells = []
    for name in photos:
        im = cv2.imread(str(shared / "groups" / "ultralight_crowd" / name))
        s = max(tw / im.shape[1], th / im.shape[0])  # cover the tile, crop the excess
        im = cv2.resize(im, (round(im.shape[1] * s), round(im.shape[0] * s)), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)  # fmt: skip
        y0, x0 = (im.shape[0] - th) // 2, (im.shape[1] - tw) // 2
        cells.append(im[y0 : y0 + th, x0 : x0 + tw])
    return np.vstack([np.hstack(cells[:2]), np.hstack(cells[2:])])


def crowd_frames(shared: Path, name: str, frames: int) -> list[np.ndarray]:
    (w, h), photos, tile = CLIPS[name]
    big = mosaic(shared, photos, tile)
    mw, mh = big.shape[1], big.shape[0]
    out = []
    for i in range(frames):
        t = i / max(frames - 1, 1)
        # Pan diagonally over the mosaic (a window a bit smaller than the mosaic).
        win_w, win_h = min(mw, round(w * 0.92 * mw / (2 * tile[0]) * 1.0)), None
        win_w = min(mw, int(mw * 0.9))
        win_h = int(win_w * h / w)
        if win_h > mh:
            win_h = mh
            win_w = int(win_h * w / h)
        x0 = round((mw - win_w) * t)
        y0 = round((mh - win_h) * (0.5 + 0.5 * np.sin(np.pi * t)) / 1.0 * 0.999)
        crop = big[y0 : y0 + win_h, x0 : x0 + win_w]
        frame = cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA)
        if i >= frames // 2:
            frame = frame[:, ::-1]
        out.append(np.ascontiguousarray(frame))
    return out


def write_clip(path: Path, frames: list[np.ndarray], fps: int = 25, rotation: int = 0) -> Path:
    """Write BGR frames as H.264; with `rotation`, store them turned so that a player that
    applies the display rotation shows the frames given here (as phones record)."""
    codes = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}
    with av.open(str(path), "w") as c:
        st = c.add_stream("libx264", rate=fps)
        first = frames[0] if not rotation else cv2.rotate(frames[0], codes[rotation])
        st.width, st.height = first.shape[1], first.shape[0]
        st.pix_fmt = "yuv420p"
        st.options = {"crf": "16", "preset": "ultrafast"}
        st.time_base = Fraction(1, fps)
        if rotation:
            st.set_display_rotation(rotation)
        for i, im in enumerate(frames):
            im = im if not rotation else cv2.rotate(im, codes[rotation])
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(im), format="bgr24")
            vf.pts = i
            for p in st.encode(vf):
                c.mux(p)
        for p in st.encode():
            c.mux(p)
    return path
