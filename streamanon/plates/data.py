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

The Kaggle set holds the same photo more than once (exact copies and resized ones, under
different numbers): 35 of the 98 train photos and 7 of the 24 tune photos are copies of
held-out ones, 5 more train photos copies of tune ones. `load_source` drops every train or
tune photo whose 16x16 average hash is within `DUP_BITS` bits of a held-out photo, and every
train photo that close to a kept tune photo, so no held-out (or tune) plate is ever trained
on: 58 train photos (58 plates) and 17 tune photos (20 plates) remain. (Distinct photos are
38 bits or more apart; copies 0-24.) The held-out set keeps its own internal copies.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np

from streamanon.errors import InputError

STORED = 416
SPLITS = ("train", "tune", "heldout")
DUP_BITS = 30


def image_hash(image: np.ndarray) -> np.ndarray:
    """16x16 average hash (256 bools): equal or near for copies of one photo."""
    g = cv2.resize(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), (16, 16), interpolation=cv2.INTER_AREA)
    g = g.astype(np.float32)
    return (g > g.mean()).ravel()


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


def _read(src: Path, x: Path) -> tuple[str, np.ndarray, np.ndarray]:
    root = ET.parse(x).getroot()
    w, h = int(root.find("size/width").text), int(root.find("size/height").text)
    image = cv2.imread(str(src / "images" / f"{x.stem}.jpg"))
    if image is None:
        raise InputError(f"{src}: images/{x.stem}.jpg missing or unreadable")
    image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    sx, sy = w / STORED, h / STORED
    boxes = []
    for obj in root.findall("object"):
        b = [float(obj.find(f"bndbox/{k}").text) for k in ("xmin", "ymin", "xmax", "ymax")]
        boxes.append([b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy])
    return f"{x.stem.lower()}.jpg", image, np.asarray(boxes, np.float32).reshape(-1, 4)


def load_source(
    src: str | Path, split: str | tuple[str, ...] = "train", dedup: bool = True
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, BGR image at its original size, (n, 4) xyxy boxes) of one or more splits, copies
    of held-out (and, for train, of tune) photos left out (``dedup``)."""
    wanted = (split,) if isinstance(split, str) else tuple(split)
    for s in wanted:
        if s not in SPLITS:
            raise InputError(f"split {s!r}: choose from {', '.join(SPLITS)}")
    src = Path(src)
    items = [(split_of(pos), _read(src, x)) for pos, x in enumerate(source_xmls(src))]
    hashes = {name: image_hash(image) for _, (name, image, _) in items}
    held = [hashes[n] for s, (n, _, _) in items if s == "heldout"]
    tune = [hashes[n] for s, (n, _, _) in items if s == "tune"]

    def copy_of(name: str, others: list[np.ndarray]) -> bool:
        return any(int((hashes[name] != o).sum()) <= DUP_BITS for o in others)

    out = []
    for s, item in items:
        if s not in wanted:
            continue
        if dedup and s != "heldout" and copy_of(item[0], held + (tune if s == "train" else [])):
            continue
        out.append(item)
    return out
