"""Parity of engines/plate_mininet_ssd.onnx with HyperLPR's Caffe model under OpenCV 4.

OpenCV 5 (what streamanon installs) has no Caffe importer, so this runs in two steps:

    python3 -m venv /tmp/cv4 && /tmp/cv4/bin/pip install "opencv-python-headless<5" numpy
    /tmp/cv4/bin/python scripts/plate_ssd_parity.py reference DNN_DIR OUT.npz IMAGE...
    python scripts/plate_ssd_parity.py compare OUT.npz IMAGE...

DNN_DIR holds mininet_ssd_v1.prototxt/.caffemodel (hyperlpr 0.0.2 wheel, models/dnn/).
`reference` builds a fresh net per image (OpenCV caches the priors of the first input size).
"""

from __future__ import annotations

import sys

import cv2
import numpy as np

MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def reference(dnn_dir: str, out: str, images: list[str]) -> None:
    res = {}
    for k, f in enumerate(images):
        net = cv2.dnn.readNetFromCaffe(
            f"{dnn_dir}/mininet_ssd_v1.prototxt", f"{dnn_dir}/mininet_ssd_v1.caffemodel"
        )
        rgb = cv2.imread(f)[:, :, ::-1].astype(np.float64) / 255.0  # HyperLPR's detect_ssd
        net.setInput(((rgb - MEAN) / STD).transpose(2, 0, 1)[None].astype(np.float32))
        det, loc, conf, pri = net.forward(["detection_out", "ssd0_concat1", "softmax0", "concat0"])
        res.update({f"det{k}": det, f"loc{k}": loc, f"conf{k}": conf, f"pri{k}": pri})
    np.savez(out, **res)


def compare(ref_file: str, images: list[str]) -> None:
    from streamanon.detect.plates import PlateSSD, decode_ssd

    ref = np.load(ref_file)
    ssd = PlateSSD(low_thresh=0.01)
    worst = {"det": 0.0, "loc": 0.0, "conf": 0.0, "pri": 0.0}
    for k, f in enumerate(images):
        img = cv2.imread(f)
        h, w = img.shape[:2]
        loc, conf, *fm = ssd.session.run(
            None, {"image": img.transpose(2, 0, 1)[None].astype(np.float32)}
        )
        pri = ssd.priors(h, w, [(int(a[2]), int(a[3])) for a in fm])
        corners = decode_ssd(np.zeros_like(pri), pri, ssd.priors.variance)
        worst["pri"] = max(
            worst["pri"], float(np.abs(corners - ref[f"pri{k}"][0, 0].reshape(-1, 4)).max())
        )
        worst["loc"] = max(
            worst["loc"], float(np.abs(loc[0] - ref[f"loc{k}"].reshape(-1, 4)).max())
        )
        worst["conf"] = max(
            worst["conf"], float(np.abs(conf[0] - ref[f"conf{k}"].reshape(-1, 2)).max())
        )
        boxes, score = ssd.detect_raw(img)
        boxes = boxes / np.array([w, h, w, h])
        mine = np.hstack([score[:100, None], boxes[:100]])
        theirs = ref[f"det{k}"][0, 0][:, 2:]
        theirs = theirs[theirs[:, 0] >= 0.01]
        if len(mine) != len(theirs):
            raise SystemExit(f"{f}: {len(mine)} detections vs {len(theirs)} in OpenCV 4")
        if len(mine):
            worst["det"] = max(worst["det"], float(np.abs(mine - theirs).max()))
    print(
        f"{len(images)} images; max |diff|: " + ", ".join(f"{k} {v:.2g}" for k, v in worst.items())
    )


if __name__ == "__main__":
    if sys.argv[1] == "reference":
        reference(sys.argv[2], sys.argv[3], sys.argv[4:])
    else:
        compare(sys.argv[2], sys.argv[3:])
