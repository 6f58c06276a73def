"""The plate detector trained here (issue 25): data, synthetic plates, model, training.

- `streamanon.plates.data`: the CC0 labelled photos (Kaggle "Car License Plate Detection" as
  stored in GitHub yoavmai/Car-license-plate-detection) and their fixed split by image:
  held-out evaluation (= ``tests/data/plates``), tuning (thresholds only), training.
- `streamanon.plates.render`: synthetic plates of many national formats composited onto real
  images, plus hard negatives (façade text, tail lights).
- `streamanon.plates.model`: `PlateNet`, a small anchor-free (CenterNet/FCOS-style) detector.
- `streamanon.plates.train`: resumable CPU training and ONNX export
  (``python -m streamanon.plates.train --help``).

Torch is only needed to train and export; the shipped detector runs on ONNX Runtime
(`streamanon.detect.plates.PlateNetONNX`).
"""
