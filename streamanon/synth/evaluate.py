"""The generator's evaluation on held-out faces: reconstruction SSIM, dlib re-identification
rate and CenterFace detection rate of the anonymized faces.

Anonymizing inputs used here (the full per-track method lives in streamanon.identity/visual):
Z_a = the appearance of the held-out face's nearest training face in dlib embedding space (the
VAA idea: a near delegate keeps age/ethnicity), Z_id = the embedding of a different, seeded
random training face, Z_g = the face's own geometry over its own background. The generated crop
is pasted back into the face's patch with a feathered face mask, then:

- re-identified: dlib's descriptor of the composite is < 0.6 from the original's;
- detected: CenterFace finds a face (score >= 0.5) overlapping the face box (IoU >= 0.3).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import torch

from streamanon.detect.centerface import CenterFace
from streamanon.synth.data import FaceSet, crop_in_patch, make_sample
from streamanon.synth.runtime import export_onnx
from streamanon.visual import GEN_SIZE, face_mask, from_signed_rgb
from streamanon.visual import dlib_models as dm

REID_THRESHOLD = 0.6


def ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean SSIM (Gaussian window σ=1.5, as Wang et al.) of two uint8 images, optionally masked."""
    if a.shape != b.shape:
        raise ValueError(f"ssim needs equal shapes, got {a.shape} and {b.shape}")
    x, y = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(t: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(t, (11, 11), 1.5)

    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    m = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    if m.ndim == 3:
        m = m.mean(axis=2)
    if mask is None:
        return float(m.mean())
    w = mask.astype(np.float64)
    return float((m * w).sum() / max(w.sum(), 1e-9))


def paste(patch: np.ndarray, crop: np.ndarray, landmarks_crop: np.ndarray) -> np.ndarray:
    """The crop blended into the centre of its patch with a feathered face mask."""
    off = int(round(-crop_in_patch(patch.shape[0])[0, 2]))
    m = face_mask(landmarks_crop, GEN_SIZE)
    m = cv2.GaussianBlur(cv2.dilate(m, np.ones((5, 5), np.uint8)), (7, 7), 2.0)[:, :, None]
    out = patch.copy()
    region = out[off : off + GEN_SIZE, off : off + GEN_SIZE].astype(np.float32)
    out[off : off + GEN_SIZE, off : off + GEN_SIZE] = np.round(
        region * (1 - m) + crop.astype(np.float32) * m
    ).astype(np.uint8)
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x1, y1 = np.maximum(a[:, 0], b[0]), np.maximum(a[:, 1], b[1])
    x2, y2 = np.minimum(a[:, 2], b[2]), np.minimum(a[:, 3], b[3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda r: (r[..., 2] - r[..., 0]) * (r[..., 3] - r[..., 1])  # noqa: E731
    return inter / (area(a) + area(b) - inter + 1e-9)


def _descriptor(image_bgr: np.ndarray, box: np.ndarray) -> np.ndarray:
    import dlib

    rgb = np.ascontiguousarray(image_bgr[:, :, ::-1])
    rects = dm.hog_detector()(rgb, 1)
    if len(rects):
        # The HOG box that best overlaps the expected face; fall back to the known box so a
        # missed HOG detection never counts as "not re-identified".
        boxes = np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in rects], float)
        best = int(np.argmax(_iou(boxes, box)))
        rect = rects[best] if _iou(boxes, box)[best] > 0.3 else None
    else:
        rect = None
    if rect is None:
        rect = dlib.rectangle(*[int(round(v)) for v in box])
    _, shape = dm.landmarks68(rgb, rect)
    return dm.embedding(rgb, shape)


def face_box(landmarks: np.ndarray) -> np.ndarray:
    lo, hi = landmarks.min(0), landmarks.max(0)
    pad = 0.1 * (hi - lo)
    return np.concatenate([lo - pad, hi + pad])


@torch.no_grad()
def evaluate_generator(
    run: callable,
    train_fs: FaceSet,
    hold_fs: FaceSet,
    n: int | None = None,
    seed: int = 0,
    grid_path: Path | None = None,
    ifa=None,
) -> dict:
    """Metrics of ``run(z_g, z_id, z_a) -> x̂`` (numpy in, numpy out) on held-out faces.

    ``ifa``: a function crop (3, S, S) -> recast Z_id (128,) (see :func:`ifa_identity`); None
    uses a random other training face's embedding as Z_id.
    """
    det = CenterFace(input_size=None)
    rng = np.random.default_rng(seed)
    n = len(hold_fs) if not n else min(n, len(hold_fs))
    # Nearest training face (appearance delegate) by dlib embedding distance.
    d = np.linalg.norm(hold_fs.embeddings[:n, None] - train_fs.embeddings[None], axis=2)
    near = d.argmin(1)
    rec_ssim, rec_ssim_face, reid, reid_rec, detected, detected_orig, dist = (
        [],
        [],
        [],
        [],
        [],
        [],
        [],
    )
    grid_rows = []
    for i in range(n):
        s = make_sample(hold_fs, i, None, None)
        a = make_sample(train_fs, int(near[i]), None, None)
        j = int(rng.integers(len(train_fs)))
        z_id_anon = train_fs.embeddings[j] if ifa is None else ifa(s["x"])
        rec = run(s["z_g"][None], s["z_id"][None], s["z_a"][None])[0]
        anon = run(s["z_g"][None], z_id_anon[None], a["z_a"][None])[0]
        x = from_signed_rgb(s["x"])
        rec_img, anon_img = from_signed_rgb(rec), from_signed_rgb(anon)
        mask = face_mask(s["landmarks"], GEN_SIZE)
        rec_ssim.append(ssim(x, rec_img))
        rec_ssim_face.append(ssim(x, rec_img, mask))
        patch = hold_fs.patches[i]
        box = face_box(hold_fs.landmarks[i])
        orig_emb = hold_fs.embeddings[i]
        comp = paste(patch, anon_img, s["landmarks"])
        comp_rec = paste(patch, rec_img, s["landmarks"])
        e = _descriptor(comp, box)
        dist.append(float(np.linalg.norm(e - orig_emb)))
        reid.append(dist[-1] < REID_THRESHOLD)
        reid_rec.append(
            float(np.linalg.norm(_descriptor(comp_rec, box) - orig_emb)) < REID_THRESHOLD
        )
        for img, acc in ((comp, detected), (patch, detected_orig)):
            dets = det(img)
            dets = dets[dets.score >= 0.5]
            acc.append(bool(len(dets) and _iou(dets.xyxy, box).max() >= 0.3))
        if grid_path is not None and i < 8:
            grid_rows.append(np.concatenate([x, rec_img, from_signed_rgb(a["z_a"]), anon_img], 1))
    if grid_path is not None and grid_rows:
        cv2.imwrite(str(grid_path), np.concatenate(grid_rows, 0))
    return {
        "faces": n,
        "reconstruction_ssim": float(np.mean(rec_ssim)),
        "reconstruction_ssim_face": float(np.mean(rec_ssim_face)),
        "reconstruction_reid_rate": float(np.mean(reid_rec)),
        "anonymized_reid_rate": float(np.mean(reid)),
        "anonymized_mean_dlib_distance": float(np.mean(dist)),
        "anonymized_detection_rate": float(np.mean(detected)),
        "original_detection_rate": float(np.mean(detected_orig)),
        "reid_threshold": REID_THRESHOLD,
    }


def ifa_identity(size: int = GEN_SIZE):
    """crop (3, S, S) -> IFA's recast identity f_x (paper eqs. 1-5) with the default codebook."""
    from streamanon.identity.codebook import default_codebook
    from streamanon.identity.ifa import recast_identity
    from streamanon.synth.psi import load_psi

    psi, book = load_psi(size), default_codebook()

    def run(x: np.ndarray) -> np.ndarray:
        chip = psi.chips(torch.from_numpy(x)[None])
        with torch.enable_grad():
            f_x, _ = recast_identity(psi.psi, chip, book)
        return f_x[0].detach().numpy()

    return run


def torch_runner(G: torch.nn.Module):
    def run(z_g: np.ndarray, z_id: np.ndarray, z_a: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            t = [torch.from_numpy(np.ascontiguousarray(v)) for v in (z_g, z_id, z_a)]
            return G(*t).numpy()

    return run


def evaluate_run(cfg, out: Path) -> dict:
    """Evaluate a training run's checkpoint; writes metrics.json, eval_grid.png, generator.onnx."""
    from streamanon.synth.networks import load_generator
    from streamanon.synth.train import load_faces

    ck = torch.load(str(out / "ckpt.pt"), map_location="cpu", weights_only=False)
    G = load_generator(out / "ckpt.pt")
    train_fs, hold_fs = load_faces(cfg)
    n = cfg.train.eval_faces or None
    run = torch_runner(G)
    metrics = {
        "swap": evaluate_generator(run, train_fs, hold_fs, n, cfg.train.seed, out / "eval_grid.png")
    }
    try:
        ifa = ifa_identity(cfg.model.size)
    except (ImportError, RuntimeError) as e:  # identity module or its weights absent
        metrics["ifa"] = {"skipped": str(e)}
    else:
        metrics["ifa"] = evaluate_generator(
            run, train_fs, hold_fs, n, cfg.train.seed, out / "eval_grid_ifa.png", ifa
        )
    metrics["step"] = int(ck["step"])
    metrics["held_out_faces"] = len(hold_fs)
    metrics["training_faces"] = len(train_fs)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    export_onnx(G, out / "generator.onnx")
    return metrics
