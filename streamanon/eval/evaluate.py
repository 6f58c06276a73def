"""Run the metrics over paired original/anonymized pictures and aggregate them.

Per pair: faces are detected on the ORIGINAL (the reference); each recognizer embeds the
original and the anonymized picture at those boxes (aligning each from its own pixels);
the detector runs again on the output for the detection rate; the 68-point predictor runs on
the output at the reference boxes for pose and expression; SSIM/PSNR are taken outside the
grown face boxes. Videos additionally get per-track identity consistency, flicker and leaked
frames, with tracks linked on the original by `metrics.link_tracks`. Every face also gets the
artefact metrics of `naturalness` (skin ΔE, seam, colour outliers, detector confidence, and
for videos the flicker inside the face in aligned crops); ``sheet_rows`` keeps original |
anonymized crops for a contact sheet.

A judge's match says something about a face only if the judge can tell that face from a blur
of itself: on Hamilton's dark audience (45-pixel faces at near-black levels) and on a blurred
profile, dlib and FaceNet matched the blur of the original to the original (dlib 0.26-0.59)
just as they matched the output. Each face is therefore also embedded after `blurred` (the
`blur` method's own cover, on the box grown 1.3x); a face the judge matches to that is
*unjudgeable* by it. ``reid`` counts every face as before; ``reid_judgeable`` only the others
(``judgeable``: their share). Coverage of such faces is the coverage judge's job.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from streamanon.anonymize.classic import BlurRedactor
from streamanon.detect.landmarks import Landmarks68
from streamanon.eval import coverage as C
from streamanon.eval import metrics as M
from streamanon.eval import naturalness as N
from streamanon.eval.pairs import Pair
from streamanon.eval.recognizers import Judge
from streamanon.eval.sheet import face_crop
from streamanon.registry import make_detector
from streamanon.types import Detections
from streamanon.visual.align import TEMPLATE68, AlignmentError, align_matrix, warp_to_crop
from streamanon.visual.inputs import face_mask
from streamanon.visual.pose import PoseError, head_pose

MOUTH_OPEN = 0.15  # mouth_opening above this counts as open
EYE_OPEN = 0.2  # eye aspect ratio above this counts as open
CROP = 48  # flicker crops are resized to CROP x CROP
ALIGNED = 64  # aligned face crops for the flicker inside the face
SHEET_ROWS = 48  # contact sheet: at most this many face rows


@dataclass
class EvalConfig:
    detector: str = "centerface"
    thresh: float = 0.5
    input_size: int | None = 640  # detector input size; None = native
    iou: float = 0.3  # a face counts as found again at this IoU
    region_scale: float = 1.6  # face boxes grown by this much are excluded from "background"
    # Coverage per face-size bin against the independent reference (eval/coverage.py):
    # RetinaFace + CenterFace at native resolution, plus dlib MMOD upsampled this many times
    # (None: off), judged by the landmark rule.
    coverage: bool = True
    coverage_mmod: int | None = None


@dataclass
class _Face:
    key: str
    frame: int
    track: int
    label: str
    found: bool
    lm_o: np.ndarray
    lm_a: np.ndarray
    shape: tuple[int, int]


def _pose(lm: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    try:
        return head_pose(lm, shape)[:2]
    except (PoseError, ValueError):
        return np.array([np.nan, np.nan], np.float32)


def _crop(img: np.ndarray, box: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    x1, y1, x2, y2 = np.round(box).astype(int)
    x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    if x2 <= x1 or y2 <= y1:
        return np.zeros((CROP, CROP, 3), np.uint8)
    return cv2.resize(img[y1:y2, x1:x2], (CROP, CROP), interpolation=cv2.INTER_AREA)


def _nanmean(xs: Sequence[float]) -> float:
    a = np.asarray(list(xs), np.float64)
    a = a[np.isfinite(a)]
    return float(a.mean()) if len(a) else float("nan")


class Evaluator:
    """Accumulates pairs; `result()` aggregates everything into one JSON-able dict."""

    def __init__(
        self,
        recognizers: Sequence[Judge],
        labels: dict[str, str] | None = None,
        config: EvalConfig | None = None,
    ) -> None:
        self.config = config or EvalConfig()
        self.recognizers = list(recognizers)
        self.labels = labels
        c = self.config
        self.detector = make_detector(
            c.detector,
            thresh=c.thresh,
            input_size=c.input_size,
            landmarks=True,
            low_thresh=c.thresh,
        )
        self.landmarks = Landmarks68()
        self.faces: list[_Face] = []
        self.emb_o: dict[str, list[np.ndarray]] = defaultdict(list)
        self.emb_a: dict[str, list[np.ndarray]] = defaultdict(list)
        self.emb_null: dict[str, list[np.ndarray]] = defaultdict(list)  # original, blurred
        self.frame_leak: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
        self.background: list[tuple[float, float]] = []
        self.whole: list[float] = []
        self.face_ssim: list[float] = []
        self.pairs = 0
        self.frames_without_faces = 0
        # video state per key
        self._prev_boxes: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._next_track: dict[str, int] = defaultdict(int)
        self.crops: dict[tuple[str, int], list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
        self.aligned: dict[tuple[str, int], list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
        self.natural: list[dict[str, float]] = []
        self.sheet_rows: list[tuple[str, np.ndarray, np.ndarray]] = []
        self._reference = None
        self.coverage = None

    def _cover(self, o: np.ndarray, a: np.ndarray, frame: int) -> None:
        if self._reference is None:
            self._reference = C.reference_detector(self.config.coverage_mmod)
            self.coverage = C.CoverageReport()
        self.coverage.faces += C.judge_frame(o, a, self._reference(o), frame)

    def add(self, pair: Pair) -> None:
        c = self.config
        o, a = pair.original, pair.anonymized
        self.pairs += 1
        if c.coverage and o.shape == a.shape:
            self._cover(o, a, pair.frame)
        det_o = self.detector(o)
        det_o = det_o[det_o.score >= c.thresh]
        boxes = det_o.xyxy
        mask = M.face_region_mask(o.shape[:2], boxes, c.region_scale)
        self.background.append((M.ssim(o, a, ~mask), M.psnr(o, a, ~mask)))
        self.whole.append(M.ssim(o, a))
        if len(boxes) == 0:
            self.frames_without_faces += 1
            if pair.video:
                self._prev_boxes[pair.key] = (boxes, np.zeros((0,), np.int64))
            return
        self.face_ssim.append(M.ssim(o, a, M.face_region_mask(o.shape[:2], boxes, 1.0)))
        det_a = self.detector(a)
        det_a = det_a[det_a.score >= c.thresh]
        found = M.matched_boxes(boxes, det_a.xyxy, c.iou)
        lm_a = self.landmarks(a, det_o)
        tracks = self._link(pair, boxes)
        for i in range(len(boxes)):
            if self.labels is not None:
                label = self.labels.get(pair.key, pair.key)
            else:
                label = f"{pair.key}#{tracks[i]}" if pair.video else f"{pair.key}#{i}"
            self.faces.append(
                _Face(
                    pair.key,
                    pair.frame,
                    int(tracks[i]),
                    label,
                    bool(found[i]),
                    det_o.landmarks68[i],
                    lm_a[i],
                    o.shape[:2],
                )
            )
            self._naturalness(pair, o, a, det_o, det_a, i, int(tracks[i]))
            if pair.video:
                self.crops[(pair.key, int(tracks[i]))].append(
                    (_crop(o, boxes[i]), _crop(a, boxes[i]))
                )
        # Faces found only in the output also count for leaks (a face moved, or a new one).
        extra = det_a.xyxy[~M.matched_boxes(det_a.xyxy, boxes, c.iou)] if len(det_a) else boxes[:0]
        null = _blurred_faces(o, boxes) if self.recognizers else o
        for rec in self.recognizers:
            eo = rec.embed(o, boxes)
            ea = rec.embed(a, boxes)
            self.emb_o[rec.name].extend(eo)
            self.emb_a[rec.name].extend(ea)
            self.emb_null[rec.name].extend(rec.embed(null, boxes))
            if pair.video:
                everywhere = np.concatenate([ea, rec.embed(a, extra)]) if len(extra) else ea
                s = M.score_matrix(eo, everywhere, rec.metric)
                leak = bool(M.is_match(s, rec.metric, rec.default_threshold).any())
                self.frame_leak[pair.key][rec.name].append(leak)

    def _naturalness(self, pair: Pair, o, a, det_o, det_a, i: int, track: int) -> None:
        lm = det_o.landmarks68[i].astype(np.float64)
        conf = N.detector_confidence(det_o.xyxy[i], det_a.xyxy, det_a.score)
        self.natural.append(N.measure_face(o, a, lm, confidence=conf))
        if len(self.sheet_rows) < SHEET_ROWS:
            label = f"{pair.key or 'input'}#{track} f{pair.frame}"
            self.sheet_rows.append(
                (label, face_crop(o, det_o.xyxy[i]), face_crop(a, det_o.xyxy[i]))
            )
        if pair.video:
            try:
                m = align_matrix(lm, ALIGNED)
            except AlignmentError:
                return
            self.aligned[(pair.key, track)].append(
                (warp_to_crop(o, m, ALIGNED), warp_to_crop(a, m, ALIGNED))
            )

    def _link(self, pair: Pair, boxes: np.ndarray) -> np.ndarray:
        if not pair.video:
            return np.arange(len(boxes))
        prev_boxes, prev_ids = self._prev_boxes.get(
            pair.key, (np.zeros((0, 4)), np.zeros((0,), np.int64))
        )
        ids = np.full(len(boxes), -1, np.int64)
        if len(prev_boxes):
            m = M.box_iou_matrix(boxes, prev_boxes)
            while m.size:
                i, j = np.unravel_index(np.argmax(m), m.shape)
                if m[i, j] < self.config.iou:
                    break
                ids[i] = prev_ids[j]
                m[i, :] = -1
                m[:, j] = -1
        for i in np.flatnonzero(ids < 0):
            ids[i] = self._next_track[pair.key]
            self._next_track[pair.key] += 1
        self._prev_boxes[pair.key] = (boxes, ids)
        return ids

    def result(self) -> dict:
        faces = self.faces
        out: dict = {
            "config": asdict(self.config),
            "pairs": self.pairs,
            "faces": len(faces),
            "pairs_without_faces": self.frames_without_faces,
            "privacy": {},
            "utility": {},
            "video": {},
        }
        if self.coverage is not None:
            out["coverage"] = self.coverage.as_dict()
        labelled = self.labels is not None
        src = np.arange(len(faces))
        labels = [f.label for f in faces]
        for rec in self.recognizers:
            eo = np.asarray(self.emb_o[rec.name])
            ea = np.asarray(self.emb_a[rec.name])
            p = {
                "metric": rec.metric,
                "thresholds": list(rec.thresholds),
                "reid": M.reid_rate(eo, ea, rec.metric, rec.thresholds),
            }
            if len(eo):
                en = np.asarray(self.emb_null[rec.name])
                blind = M.is_match(M.paired_scores(eo, en, rec.metric), rec.metric,
                                   rec.default_threshold)  # fmt: skip
                p["judgeable"] = float(1.0 - blind.mean())
                p["reid_judgeable"] = M.reid_rate(eo[~blind], ea[~blind], rec.metric,
                                                  rec.thresholds)  # fmt: skip
            lr = M.labelled_rates(eo, labels, ea, src, rec.metric, rec.thresholds)
            p["swap"] = lr["swap"]
            if labelled:
                p["reid_other"] = lr["reid_other"]
            if len(eo):
                p["mean_score"] = float(M.paired_scores(eo, ea, rec.metric).mean())
            out["privacy"][rec.name] = p
        u = out["utility"]
        u["detection_rate"] = M.detection_rate([np.array([f.found for f in faces])])
        u["ssim_background"] = _nanmean(b[0] for b in self.background)
        bg_psnr = [b[1] for b in self.background]
        u["psnr_background"] = (
            float("inf")
            if bg_psnr and all(np.isinf(bg_psnr))
            else _nanmean([x for x in bg_psnr if np.isfinite(x)])
        )
        u["ssim_image"] = _nanmean(self.whole)
        u["ssim_face"] = _nanmean(self.face_ssim)
        if faces:
            po = np.array([_pose(f.lm_o, f.shape) for f in faces])
            pa = np.array([_pose(f.lm_a, f.shape) for f in faces])
            u["yaw"] = M.agreement(po[:, 0], pa[:, 0])
            u["pitch"] = M.agreement(po[:, 1], pa[:, 1])
            lo = np.array([f.lm_o for f in faces])
            la = np.array([f.lm_a for f in faces])
            mo, ma = M.mouth_opening(lo), M.mouth_opening(la)
            eo_, ea_ = M.eye_opening(lo), M.eye_opening(la)
            u["mouth"] = {**M.agreement(mo, ma), "state": M.state_agreement(mo, ma, MOUTH_OPEN)}
            u["eyes"] = {**M.agreement(eo_, ea_), "state": M.state_agreement(eo_, ea_, EYE_OPEN)}
        out["naturalness"] = N.summarise(self.natural)
        out["video"] = self._video_result()
        return out

    def _video_result(self) -> dict:
        res: dict = {}
        keys = sorted({f.key for f in self.faces if (f.key, f.track) in self.crops})
        for key in keys:
            idx = [i for i, f in enumerate(self.faces) if f.key == key]
            tracks = sorted({self.faces[i].track for i in idx})
            v: dict = {"tracks": len(tracks), "identity_consistency": {}, "leaked_frames": {}}
            for rec in self.recognizers:
                ea = np.asarray(self.emb_a[rec.name])
                per = []
                for t in tracks:
                    rows = [i for i in idx if self.faces[i].track == t]
                    r = M.identity_consistency(ea[rows], rec.metric, rec.default_threshold)
                    if r["pairs"]:
                        per.append(r["match"])
                v["identity_consistency"][rec.name] = _nanmean(per)
                v["leaked_frames"][rec.name] = M.leaked_frames(self.frame_leak[key][rec.name])
            fl = []
            for t in tracks:
                crops = self.crops[(key, t)]
                if len(crops) > 1:
                    fl.append(M.flicker([c[0] for c in crops], [c[1] for c in crops]))
            v["flicker"] = _nanmean(fl)
            v["flicker_face"] = _nanmean(self._face_flicker(key, t) for t in tracks)
            res[key] = v
        return res

    def _face_flicker(self, key: str, track: int) -> float:
        crops = self.aligned.get((key, track), [])
        if len(crops) < 2:
            return float("nan")
        mask = face_mask(TEMPLATE68 * ALIGNED, ALIGNED) > 0.5
        return N.face_flicker([c[0] for c in crops], [c[1] for c in crops], mask)


def _blurred_faces(image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """``image`` with every box covered as ``--method blur`` covers it (the null control)."""
    out = image.copy()
    BlurRedactor().apply(out, Detections(boxes, np.ones(len(boxes), np.float32)))
    return out


def evaluate(
    pairs: Iterable[Pair],
    recognizers: Sequence[Judge],
    labels: dict[str, str] | None = None,
    config: EvalConfig | None = None,
) -> dict:
    """All metrics for the given pairs (see the module docstring)."""
    ev = Evaluator(recognizers, labels, config)
    for p in pairs:
        ev.add(p)
    return ev.result()
