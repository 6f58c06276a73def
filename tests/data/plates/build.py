"""Rebuild this folder's images and labels.json from the source repository (see SOURCES.md).

    git clone https://github.com/yoavmai/Car-license-plate-detection /tmp/src
    git -C /tmp/src checkout 8c56aa962b50b7e813df9fbc4c9c4de5de826761
    python tests/data/plates/build.py /tmp/src

That repository stores the Kaggle "Car License Plate Detection" images (CC0) resized to
416x416 and their boxes in 416x416 pixels, with the original size in the XML; this restores
the original aspect (INTER_AREA resize back to width x height) and scales the boxes alike.
Every third image in name order is kept (61 of 183) to keep the folder small.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2

HERE = Path(__file__).resolve().parent
STORED = 416


def main(src: str) -> None:
    labels = {}
    xmls = sorted((Path(src) / "annotations").glob("Cars*.xml"))
    xmls = [x for x in xmls if x.stem[4:].isdigit()][::3]
    for x in xmls:
        root = ET.parse(x).getroot()
        w, h = int(root.find("size/width").text), int(root.find("size/height").text)
        image = cv2.imread(str(Path(src) / "images" / f"{x.stem}.jpg"))
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        boxes = []
        for obj in root.findall("object"):
            b = [float(obj.find(f"bndbox/{k}").text) for k in ("xmin", "ymin", "xmax", "ymax")]
            sx, sy = w / STORED, h / STORED
            boxes.append(
                [round(b[0] * sx, 1), round(b[1] * sy, 1), round(b[2] * sx, 1), round(b[3] * sy, 1)]
            )
        name = f"{x.stem.lower()}.jpg"
        cv2.imwrite(str(HERE / name), image, [cv2.IMWRITE_JPEG_QUALITY, 88])
        labels[name] = boxes
    (HERE / "labels.json").write_text(json.dumps(labels, indent=1, sort_keys=True) + "\n")
    print(f"{len(labels)} images, {sum(map(len, labels.values()))} plates")


if __name__ == "__main__":
    main(sys.argv[1])
