"""License plate detectors behind the face `Detector` protocol: ``detector(image_bgr) -> Detections``.

Two backends:

- `PlateSSD` (default, shipped): HyperLPR's MobileNet-SSD (Apache-2.0), converted once to
  ``engines/plate_mininet_ssd.onnx`` by `streamanon.detect.plate_convert`. The ONNX graph
  ends at the SSD heads; priors and decoding (Caffe's PriorBox / DetectionOutput) are numpy
  here, so any input size works. It was trained on Chinese plates: on other plates it finds
  about 4 in 5 (docs/plates.md), so it runs on an image pyramid (each level an independent
  chance) and its boxes are padded generously.
- `YoloV9Plates`: a YOLOv9 plate model the user supplies (``--plate-model FILE``), in the
  ONNX format open-image-models documents (square input, RGB/255, letterboxed with grey 114;
  output either end-to-end ``(N, 7)`` rows ``[batch, x1, y1, x2, y2, class, score]`` or raw
  ``(1, 4 + classes, anchors)`` centre-size boxes). We never download it.

Both return every plate scoring at least ``low_thresh`` (the tracker's second stage keeps
low-score boxes that continue a track), padded by ``pad`` (fraction of width, height on each
side) and clipped to the image.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from streamanon.detect.base import check_image, clip_detections, nms
from streamanon.errors import InputError, ModelMissingError
from streamanon.models import onnx_session
from streamanon.paths import engine_file
from streamanon.types import Detections

MODEL_NAME = "plate_mininet_ssd.onnx"
# Pyramid levels (longest side of the resized frame). The SSD's hit rate on non-Chinese
# plates is flat (65-80 %) from 16 to 160 px plate height, so the levels are less about size
# than about independent chances: three levels find 82 % of the labelled set's plates that
# one level (64 %) misses (docs/plates.md).
LEVELS = (320, 640, 1280)
MAX_UPSCALE = 2.0
# Tiles bound the network input (and memory) on big frames: a level larger than this is cut
# into overlapping tiles. The overlap is more than a plate at that level is tall.
TILE = 1280
TILE_OVERLAP = 96
# SSD boxes sit on the plate but often cut its ends or edges (median width 1.0x, height 0.9x of
# the labelled box, 10th percentile 0.84x / 0.66x): grow them so the whole plate is covered.
PAD = (0.3, 0.5)


def _session(model: bytes | str, threads: int | None):
    return onnx_session(model, "plate detector", threads)


def pad_boxes(xyxy: np.ndarray, pad: tuple[float, float]) -> np.ndarray:
    """Grow each box by ``pad[0]`` of its width left and right and ``pad[1]`` of its height
    above and below."""
    b = np.asarray(xyxy, np.float32).reshape(-1, 4)
    wh = b[:, 2:] - b[:, :2]
    grow = wh * np.asarray(pad, np.float32)
    return np.hstack([b[:, :2] - grow, b[:, 2:] + grow])


def tiles(h: int, w: int, tile: int = TILE, overlap: int = TILE_OVERLAP) -> list[tuple[int, int]]:
    """Top-left corners (y, x) of ``tile``-sized windows covering an (h, w) image."""

    def starts(n: int) -> list[int]:
        if n <= tile:
            return [0]
        step = tile - overlap
        out = list(range(0, n - tile, step))
        return out + [n - tile]

    return [(y, x) for y in starts(h) for x in starts(w)]


class SSDPriors:
    """Caffe PriorBox for the layers described in the model's ``ssd_priors`` metadata."""

    def __init__(self, layers: list[dict]) -> None:
        self.layers = layers
        self.variance = np.asarray(layers[0]["variance"], np.float32)
        self._cache: dict[tuple, np.ndarray] = {}

    def __call__(self, h: int, w: int, fmaps: list[tuple[int, int]]) -> np.ndarray:
        """(N, 4) priors as normalised (cx, cy, w, h) for an h x w input."""
        key = (h, w, tuple(fmaps))
        if key in self._cache:
            return self._cache[key]
        out = []
        for p, (fh, fw) in zip(self.layers, fmaps, strict=True):
            sizes = []  # Caffe's order: min square, sqrt(min*max) square, then aspect ratios
            for i, mn in enumerate(p["min_size"]):
                sizes.append((mn, mn))
                if p["max_size"]:
                    s = float(np.sqrt(mn * p["max_size"][i]))
                    sizes.append((s, s))
                for ar in p["aspect_ratio"]:
                    if abs(ar - 1.0) > 1e-6:
                        sizes.append((mn * np.sqrt(ar), mn / np.sqrt(ar)))
            ys, xs = np.meshgrid(np.arange(fh), np.arange(fw), indexing="ij")
            cx = (xs + p["offset"]) / fw  # step = w / fw, normalised by w
            cy = (ys + p["offset"]) / fh
            b = np.empty((fh, fw, len(sizes), 4), np.float32)
            for k, (bw, bh) in enumerate(sizes):
                b[:, :, k, 0], b[:, :, k, 1] = cx, cy
                b[:, :, k, 2], b[:, :, k, 3] = bw / w, bh / h
            out.append(b.reshape(-1, 4))
        priors = np.concatenate(out)
        if len(self._cache) > 16:
            self._cache.clear()
        self._cache[key] = priors
        return priors


def decode_ssd(loc: np.ndarray, priors: np.ndarray, variance: np.ndarray) -> np.ndarray:
    """CENTER_SIZE decoding of (N, 4) offsets against (N, 4) priors -> normalised xyxy."""
    cx = priors[:, 0] + loc[:, 0] * variance[0] * priors[:, 2]
    cy = priors[:, 1] + loc[:, 1] * variance[1] * priors[:, 3]
    w = priors[:, 2] * np.exp(loc[:, 2] * variance[2])
    h = priors[:, 3] * np.exp(loc[:, 3] * variance[3])
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


class PlateSSD:
    """The shipped plate detector: ``PlateSSD()(image_bgr) -> Detections`` (boxes, scores)."""

    name = "plate_ssd"

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        levels: tuple[int, ...] = LEVELS,
        low_thresh: float = 0.1,
        nms_iou: float = 0.45,
        pad: tuple[float, float] = PAD,
        threads: int | None = None,
    ) -> None:
        path = Path(model_path) if model_path is not None else engine_file(MODEL_NAME)
        if not path.is_file():
            raise ModelMissingError(f"plate model {path} not found")
        if not 0.0 < low_thresh <= 1.0:
            raise InputError(f"low_thresh must be in (0, 1], got {low_thresh}")
        if not levels or min(levels) < 64:
            raise InputError(f"plate pyramid levels must be >= 64 px, got {levels}")
        self.levels, self.low_thresh, self.nms_iou, self.pad = (
            tuple(levels),
            low_thresh,
            nms_iou,
            pad,
        )
        self.session = _session(str(path), threads)
        meta = self.session.get_modelmeta().custom_metadata_map
        if "ssd_priors" not in meta:
            raise ModelMissingError(f"{path} is not a converted plate SSD (no ssd_priors metadata)")
        self.priors = SSDPriors(json.loads(meta["ssd_priors"]))
        self.top_k = int(json.loads(meta.get("ssd_detection", "{}")).get("top_k", 400))

    def detect_raw(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One network pass at the image's own size: (boxes px (n, 4), scores (n,)), after NMS."""
        h, w = image_bgr.shape[:2]
        blob = image_bgr.transpose(2, 0, 1)[None].astype(np.float32)
        loc, conf, *fmaps = self.session.run(None, {"image": blob})
        priors = self.priors(h, w, [(int(f[2]), int(f[3])) for f in fmaps])
        score = conf[0, :, 1]
        keep = np.nonzero(score >= self.low_thresh)[0]
        keep = keep[np.argsort(-score[keep], kind="stable")][: self.top_k]
        boxes = decode_ssd(loc[0, keep], priors[keep], self.priors.variance)
        boxes *= np.array([w, h, w, h], np.float32)
        k = nms(boxes, score[keep], self.nms_iou)
        return boxes[k].astype(np.float32), score[keep][k].astype(np.float32)

    def _level_sizes(self, h: int, w: int) -> list[float]:
        longest = max(h, w)
        # One entry per level even where the upscale cap makes two equal (keeps the cycle).
        return sorted(min(size / longest, MAX_UPSCALE) for size in self.levels)

    def __call__(self, image_bgr: np.ndarray, level: int | None = None) -> Detections:
        """All pyramid levels, or only level ``level`` (index into the sorted levels; the
        tracker's video mode cycles through them, one per frame)."""
        image = check_image(image_bgr)
        h, w = image.shape[:2]
        all_boxes, all_scores = [], []
        scales = self._level_sizes(h, w)
        if level is not None:
            scales = [scales[level % len(scales)]]
        for s in scales:
            size = (max(32, round(w * s)), max(32, round(h * s)))
            interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
            level = image if size == (w, h) else cv2.resize(image, size, interpolation=interp)
            fx, fy = w / level.shape[1], h / level.shape[0]
            for y, x in tiles(*level.shape[:2]):
                part = level[y : y + TILE, x : x + TILE]
                boxes, score = self.detect_raw(part)
                boxes += np.array([x, y, x, y], np.float32)
                all_boxes.append(boxes * np.array([fx, fy, fx, fy], np.float32))
                all_scores.append(score)
        return _merge(all_boxes, all_scores, self.nms_iou, self.pad, image.shape)


def _merge(boxes: list, scores: list, nms_iou: float, pad, shape) -> Detections:
    if not boxes:
        return Detections.empty()
    b = np.concatenate(boxes).reshape(-1, 4)
    s = np.concatenate(scores).reshape(-1)
    keep = nms(b, s, nms_iou)
    return clip_detections(Detections(pad_boxes(b[keep], pad), s[keep]), shape)


class YoloV9Plates:
    """A user-supplied YOLOv9 plate model in open-image-models' ONNX format."""

    name = "plate_yolov9"

    def __init__(
        self,
        model_path: str | Path,
        *,
        low_thresh: float = 0.1,
        nms_iou: float = 0.45,
        pad: tuple[float, float] = (0.1, 0.2),
        threads: int | None = None,
    ) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise ModelMissingError(
                f"--plate-model {path}: file not found (streamanon never downloads plate models;"
                " see docs/plates.md)"
            )
        try:
            self.session = _session(str(path), threads)
        except Exception as exc:  # noqa: BLE001 - any ORT load error is a bad model file
            raise InputError(f"--plate-model {path}: not a loadable ONNX model ({exc})") from None
        ins = self.session.get_inputs()
        shape = ins[0].shape
        if (
            len(ins) != 1
            or len(shape) != 4
            or shape[1] != 3
            or not all(isinstance(d, int) and d > 0 for d in shape[2:])
        ):
            got = [(i.name, i.shape) for i in ins]
            raise InputError(
                f"--plate-model {path}: expected one fixed (1, 3, S, S) input, got {got}"
            )
        self.input_name, self.size = ins[0].name, (int(shape[2]), int(shape[3]))
        self.low_thresh, self.nms_iou, self.pad = low_thresh, nms_iou, pad
        # One run on a blank frame at load: a valid ONNX of another shape or type is refused
        # here, in one line, before any work (issue 24), not by a crash mid-run.
        try:
            self._outputs(np.zeros((1, 3, *self.size), np.float32))
        except InputError as exc:
            raise InputError(f"--plate-model {path}: {exc}") from None

    def _outputs(self, blob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(boxes xyxy in the letterboxed frame, scores) from the model's first output."""
        try:
            out = np.asarray(self.session.run(None, {self.input_name: blob})[0], np.float32)
        except Exception as exc:  # noqa: BLE001 - ORT's errors for inputs the graph rejects
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(
                f"the model does not run on a (1, 3, H, W) float image ({msg})"
            ) from None
        if out.ndim == 2 and out.shape[1] == 7:  # end-to-end: NMS done in the graph
            return out[:, 1:5], out[:, 6]
        if out.ndim == 3 and out.shape[0] == 1 and out.shape[1] >= 5:  # raw heads
            pred = out[0].T  # (anchors, 4 + classes)
            c, wh = pred[:, :2], pred[:, 2:4]
            return np.hstack([c - wh / 2, c + wh / 2]), pred[:, 4:].max(axis=1)
        raise InputError(
            f"output of shape {out.shape} is not a YOLOv9 format ((N, 7) or (1, 4 + classes, N))"
        )

    def _letterbox(self, image: np.ndarray) -> tuple[np.ndarray, float, tuple[float, float]]:
        h, w = image.shape[:2]
        th, tw = self.size
        r = min(th / h, tw / w)
        nw, nh = round(w * r), round(h * r)
        resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
        dw, dh = (tw - nw) / 2, (th - nh) / 2
        top, left = round(dh - 0.1), round(dw - 0.1)
        out = np.full((th, tw, 3), 114, np.uint8)
        out[top : top + nh, left : left + nw] = resized
        return out, r, (left, top)

    def __call__(self, image_bgr: np.ndarray) -> Detections:
        image = check_image(image_bgr)
        boxed, r, (dx, dy) = self._letterbox(image)
        blob = (boxed[:, :, ::-1].transpose(2, 0, 1)[None] / 255.0).astype(np.float32)
        boxes, score = self._outputs(blob)
        keep = score >= self.low_thresh
        boxes, score = boxes[keep], score[keep]
        boxes = (boxes - np.array([dx, dy, dx, dy], np.float32)) / r
        return _merge([boxes], [score], self.nms_iou, self.pad, image.shape)


# -- PlateNet: the detector trained here (streamanon.plates) ---------------------------------

PLATENET_NAME = "plate_net.onnx"
# Longest side of the frame at each level. Close-up plates (as wide as the photo) are found at
# the small level; 20-40 px plates at the large one. The 160 level (issue 25, second model):
# on close-up cuts of the openalpr validation photos (`streamanon.eval.plate_valset.closeups`) it
# took the first model from 85 to 99 of 109 plates at its threshold, for ~5 % more time.
PLATENET_LEVELS = (160, 320, 640)
# Box padding when the model's metadata carries none (the first model's, from its tune split).
PLATENET_PAD = (0.09, 0.16)
PLATENET_MEAN = 114
PLATENET_STRIDE = 4  # output cells per input pixel (streamanon.plates.model.STRIDE)
# Large frames (longest side >= HIRES_FROM x the largest level) are also searched at this
# longest side (never upscaled) in ~700 px windows: 720p at native size in 4 windows, 1080p
# at 1280 in 4. Video runs one window per frame (`PlateNetONNX.scan`), photos all of them.
PLATENET_HIRES = 1280
HIRES_FROM = 1.5


def _grid(n: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """(start, length) of the fewest windows of at most `tile` px covering `n` px with
    `overlap`, all of one length."""
    if n <= tile:
        return [(0, n)]
    k = -(-(n - overlap) // (tile - overlap))
    length = -(-(n + (k - 1) * overlap) // k)
    return [(min(i * (length - overlap), n - length), length) for i in range(k)]


def hires_tiles(
    h: int, w: int, tile: int = 704, overlap: int = 48
) -> list[tuple[int, int, int, int]]:
    """(y, x, th, tw) windows of an h x w image, each at most `tile` px a side."""
    return [
        (y, x, th, tw) for y, th in _grid(h, tile, overlap) for x, tw in _grid(w, tile, overlap)
    ]


def platenet_decode(hm, box, thresh: float, top_k: int = 100):
    """Peaks of a (1, 1, h, w) heatmap >= thresh -> (xyxy (n, 4), score (n,)) as numpy, in the
    network input's pixels. Works on numpy arrays (ONNX Runtime) and torch tensors (training)."""
    hm = np.asarray(hm)[0, 0]
    box = np.asarray(box)[0]
    ys, xs = np.nonzero(hm >= thresh)
    score = hm[ys, xs]
    order = np.argsort(-score, kind="stable")[:top_k]
    ys, xs, score = ys[order], xs[order], score[order]
    cx, cy = (xs + 0.5) * PLATENET_STRIDE, (ys + 0.5) * PLATENET_STRIDE
    left, top, right, bottom = (box[i, ys, xs] for i in range(4))
    xyxy = np.stack([cx - left, cy - top, cx + right, cy + bottom], axis=1).astype(np.float32)
    return xyxy.reshape(-1, 4), score.astype(np.float32)


def _run_net(infer, part: np.ndarray, low_thresh: float) -> tuple[np.ndarray, np.ndarray]:
    ph, pw = part.shape[:2]
    H, W = -(-ph // 32) * 32, -(-pw // 32) * 32
    blob = np.full((1, 3, H, W), PLATENET_MEAN, np.float32)
    blob[0, :, :ph, :pw] = part.transpose(2, 0, 1)
    hm, box = infer(blob)
    return platenet_decode(hm, box, low_thresh)


def _resized(image: np.ndarray, s: float) -> np.ndarray:
    h, w = image.shape[:2]
    nw, nh = max(32, round(w * s)), max(32, round(h * s))
    if (nw, nh) == (w, h):
        return image
    return cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)


def platenet_detect(
    infer,
    image_bgr: np.ndarray,
    levels: tuple[int, ...] = PLATENET_LEVELS,
    low_thresh: float = 0.1,
    nms_iou: float = 0.4,
    max_upscale: float = MAX_UPSCALE,
    tile: int = TILE,
    hires: int | None = None,
    hires_tile: int | None = None,
) -> Detections:
    """Run a PlateNet `infer(blob) -> (heatmap, box)` over the image pyramid `levels`; unpadded
    boxes in image pixels, merged by NMS. Levels larger than `tile` are cut into tiles.

    `hires` (longest side, never upscaled): a high-resolution level searched in windows of
    `hires_tiles` for small plates: all of them, or only window ``hires_tile % count`` (video:
    one window per frame, the tracker joins them)."""
    image = check_image(image_bgr)
    h, w = image.shape[:2]
    all_boxes, all_scores = [], []
    for size in levels:
        s = min(size / max(h, w), max_upscale)
        level = _resized(image, s)
        nh, nw = level.shape[:2]
        fx, fy = w / nw, h / nh
        for y, x in tiles(nh, nw, tile, TILE_OVERLAP):
            boxes, score = _run_net(infer, level[y : y + tile, x : x + tile], low_thresh)
            boxes += np.array([x, y, x, y], np.float32)
            all_boxes.append(boxes * np.array([fx, fy, fx, fy], np.float32))
            all_scores.append(score)
    if hires:
        level = _resized(image, min(hires / max(h, w), 1.0))
        nh, nw = level.shape[:2]
        fx, fy = w / nw, h / nh
        windows = hires_tiles(nh, nw)
        if hires_tile is not None:
            windows = [windows[hires_tile % len(windows)]]
        for y, x, th, tw in windows:
            boxes, score = _run_net(infer, level[y : y + th, x : x + tw], low_thresh)
            # A plate cut by the window's inner edge is found whole by the neighbour.
            boxes += np.array([x, y, x, y], np.float32)
            all_boxes.append(boxes * np.array([fx, fy, fx, fy], np.float32))
            all_scores.append(score)
    return _merge(all_boxes, all_scores, nms_iou, (0.0, 0.0), image.shape)


class PlateNetONNX:
    """The plate detector trained here (`streamanon.plates`), through ONNX Runtime.

    ``PlateNetONNX()(image_bgr) -> Detections``; boxes padded by ``pad``. The model file must
    be a PlateNet export: input ``image`` (1, 3, H, W), outputs ``heatmap`` (1, 1, H/4, W/4)
    and ``box`` (1, 4, H/4, W/4), metadata ``streamanon_platenet``; anything else is refused
    with one line (`InputError`)."""

    name = "plate_net"

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        levels: tuple[int, ...] = PLATENET_LEVELS,
        low_thresh: float = 0.1,
        nms_iou: float = 0.4,
        pad: tuple[float, float] | None = None,
        hires: int | None = PLATENET_HIRES,
        threads: int | None = None,
    ) -> None:
        path = Path(model_path) if model_path is not None else engine_file(PLATENET_NAME)
        if not path.is_file():
            raise ModelMissingError(f"plate model {path} not found")
        if not levels or min(levels) < 64:
            raise InputError(f"plate pyramid levels must be >= 64 px, got {levels}")
        try:
            self.session = _session(str(path), threads)
        except Exception as exc:  # noqa: BLE001 - any ORT load error is a bad model file
            raise InputError(f"plate model {path}: not a loadable ONNX model ({exc})") from None
        self.meta = check_platenet(self.session, path)
        self.levels, self.low_thresh, self.nms_iou = tuple(levels), low_thresh, nms_iou
        # The padding the model was exported with (chosen on its validation photos) unless
        # the caller gives one.
        self.pad = tuple(pad or self.meta.get("pad") or PLATENET_PAD)
        self.hires = hires
        self.thresh = float(self.meta.get("thresh", 0.3))

    def infer(self, blob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        hm, box = self.session.run(["heatmap", "box"], {"image": blob})
        return hm, box

    def _hires_for(self, image: np.ndarray) -> int | None:
        """The hires level when it adds resolution (frame well above the largest level)."""
        if not self.hires or max(image.shape[:2]) < HIRES_FROM * max(self.levels):
            return None
        return self.hires

    def __call__(self, image_bgr: np.ndarray) -> Detections:
        """Every level, and every high-resolution window on large images."""
        return self._detect(image_bgr, None)

    def scan(self, image_bgr: np.ndarray, index: int) -> Detections:
        """Video: every level, and high-resolution window ``index`` (cycling) on large frames."""
        return self._detect(image_bgr, index)

    def _detect(self, image_bgr: np.ndarray, window: int | None) -> Detections:
        image = check_image(image_bgr)
        hires = self._hires_for(image)
        dets = platenet_detect(
            self.infer, image, self.levels, self.low_thresh, self.nms_iou,
            hires=hires, hires_tile=window,
        )  # fmt: skip
        if len(dets) == 0:
            return dets
        return clip_detections(Detections(pad_boxes(dets.xyxy, self.pad), dets.score), image.shape)


def is_platenet_file(path: str | Path) -> bool:
    """Whether `path` is an ONNX file with PlateNet's metadata (False for anything else)."""
    try:
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - not ONNX: the YOLOv9 loader says so in one line
        return False
    return any(p.key == "streamanon_platenet" for p in proto.metadata_props)


def check_platenet(session, path: str | Path) -> dict:
    """The model's ``streamanon_platenet`` metadata, after checking its inputs and outputs
    have PlateNet's shapes; otherwise one-line `InputError`."""
    ins, outs = session.get_inputs(), {o.name: o.shape for o in session.get_outputs()}

    def bad(why: str) -> InputError:
        return InputError(f"plate model {path}: not a PlateNet export ({why})")

    if len(ins) != 1 or ins[0].name != "image" or len(ins[0].shape) != 4 or ins[0].shape[1] != 3:
        raise bad(f"input must be image (1, 3, H, W), got {[(i.name, i.shape) for i in ins]}")
    for name, ch in (("heatmap", 1), ("box", 4)):
        shape = outs.get(name)
        if shape is None or len(shape) != 4 or shape[1] != ch:
            raise bad(f"output {name} must be (1, {ch}, H/4, W/4), got {shape}")
    meta = session.get_modelmeta().custom_metadata_map
    if "streamanon_platenet" not in meta:
        raise bad("no streamanon_platenet metadata")
    return json.loads(meta["streamanon_platenet"])
