"""The CC0 labelled plate photos and their fixed split by image.

Source: Kaggle "Car License Plate Detection" (Larxel, CC0 1.0), as stored in GitHub
yoavmai/Car-license-plate-detection @ 8c56aa962b50b7e813df9fbc4c9c4de5de826761: 183 photos
``images/CarsN.jpg`` stretched to 416x416, boxes in ``annotations/CarsN.xml`` (in 416 px, with
the original size). `load_source` undoes the stretch exactly as ``tests/data/plates/build.py``.

Split (by image, in the name order of ``build.py``: ``sorted(Path.glob("Cars*.xml"))``):

- position % 3 == 0 -> ``heldout`` (61 images): the copies in ``tests/data/plates``; never
  trained on, never used to choose a threshold;
- of the rest, every fifth (position // 3 % 5 == 1, positions 4, 5, 19, 20, ...) -> ``tune``
  (24 images): thresholds and model selection only;
- the remaining 98 -> ``train``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np

from streamanon.errors import InputError

STORED = 416
SPLITS = ("train", "tune", "heldout")


def split_of(position: int) -> str:
    """The split of the image at `position` in name order (see the module docstring)."""
    if position % 3 == 0:
        return "heldout"
    return "tune" if (position // 3) % 5 == 1 else "train"


def source_xmls(src: str | Path) -> list[Path]:
    """The source's annotation files in the order that fixes the split."""
    xmls = sorted((Path(src) / "annotations").glob("Cars*.xml"))
    xmls = [x for x in xmls if x.stem[4:].isdigit()]
    if not xmls:
        raise InputError(
            f"{src}: no annotations/CarsN.xml (a checkout of yoavmai/Car-license-plate-detection"
            " @ 8c56aa96 is expected)"
        )
    return xmls


def load_source(
    src: str | Path, split: str | tuple[str, ...] = "train"
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, BGR image at its original size, (n, 4) xyxy boxes) of one or more splits."""
    wanted = (split,) if isinstance(split, str) else tuple(split)
    for s in wanted:
        if s not in SPLITS:
            raise InputError(f"split {s!r}: choose from {', '.join(SPLITS)}")
    out = []
    for pos, x in enumerate(source_xmls(src)):
        if split_of(pos) not in wanted:
            continue
        root = ET.parse(x).getroot()
        w, h = int(root.find("size/width").text), int(root.find("size/height").text)
        image = cv2.imread(str(Path(src) / "images" / f"{x.stem}.jpg"))
        if image is None:
            raise InputError(f"{src}: images/{x.stem}.jpg missing or unreadable")
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        sx, sy = w / STORED, h / STORED
        boxes = []
        for obj in root.findall("object"):
            b = [float(obj.find(f"bndbox/{k}").text) for k in ("xmin", "ymin", "xmax", "ymax")]
            boxes.append([b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy])
        out.append((f"{x.stem.lower()}.jpg", image, np.asarray(boxes, np.float32).reshape(-1, 4)))
    return out
