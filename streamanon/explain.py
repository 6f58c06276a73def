"""``streamanon explain face.jpg -o cam.png``: what intrinsic attention distraction changes.

Left: the Grad-CAM heatmap H of the face's top codebook class over the aligned face; right:
Ĥ, the same class's Grad-CAM on the distracted feature map Â (the paper's Fig. 2b). Both use
one colour scale (H's maximum), so a dark right panel means the attention is gone. The caption
gives the distance between the original and the recast identity feature (dlib's same-person
threshold is 0.6). With ``--vca`` the visual-clue rendering of streamanon.visual.explain is
added below.

A job, like `run` and `live`: it sits above the stages it shows, `identity` (Grad-CAM of Ψ
before and after the distraction) and `visual` (`streamanon.visual.explain` renders the
delegates for ``--vca``), so neither stage imports the other.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from streamanon.errors import StreamanonError
from streamanon.identity.align import align_chip
from streamanon.identity.embed import chips_to_tensor
from streamanon.io.atomic import atomic_output, check_output
from streamanon.io.images import write_image
from streamanon.models import hog_detector
from streamanon.visual.explain import render_vca

PANEL = 300  # px per panel: the 150 px chip shown at 2x


class _ArgError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line and exit code 2, not argparse's usage dump
        raise _ArgError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="streamanon explain", description=__doc__.splitlines()[0])
    p.add_argument("image", help="an image with a face (the largest face is explained)")
    p.add_argument("-o", "--output", required=True, help="output image (.png/.jpg)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output image")
    p.add_argument("--box", help="face box x1,y1,x2,y2 instead of detecting one")
    p.add_argument("-k", type=int, default=None, help="classes to distract (default: 5)")
    p.add_argument("--weights", help="comma-separated w_1..w_K (default: 1,2.5,...)")
    p.add_argument("--vca", action="store_true", help="also render visual clue anonymization")
    return p


def _heat(chip_rgb: np.ndarray, cam: np.ndarray, vmax: float) -> np.ndarray:
    import cv2

    base = cv2.resize(chip_rgb[:, :, ::-1], (PANEL, PANEL), interpolation=cv2.INTER_LINEAR)
    m = cv2.resize(cam.astype(np.float32), (PANEL, PANEL), interpolation=cv2.INTER_LINEAR)
    m = np.clip(m / max(vmax, 1e-12), 0, 1)
    color = cv2.applyColorMap((m * 255).astype(np.uint8), cv2.COLORMAP_JET)
    alpha = (0.15 + 0.5 * m)[:, :, None]  # cold areas stay mostly face
    return (base * (1 - alpha) + color * alpha).astype(np.uint8)


def _label(img: np.ndarray, text: str) -> np.ndarray:
    import cv2

    out = img.copy()
    cv2.putText(out, text, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, text, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def _face_box(image_bgr: np.ndarray, box: str | None) -> np.ndarray:
    if box is not None:
        try:
            vals = [float(v) for v in box.split(",")]
        except ValueError:
            vals = []
        if len(vals) != 4:
            raise _ArgError(f"--box must be x1,y1,x2,y2, got {box!r}")
        return np.array(vals, np.float32)
    rgb = np.ascontiguousarray(image_bgr[:, :, ::-1])
    rects = hog_detector()(rgb, 1 if max(rgb.shape[:2]) < 600 else 0)
    if not rects:
        raise _ArgError("no face found in the image (give one with --box x1,y1,x2,y2)")
    r = max(rects, key=lambda r: r.area())
    return np.array([r.left(), r.top(), r.right() + 1, r.bottom() + 1], np.float32)


def render_ifa(
    image_bgr: np.ndarray, box: np.ndarray, k: int | None = None, weights: list[float] | None = None
) -> tuple[np.ndarray, dict]:
    """The side-by-side H | Ĥ panel (BGR uint8) and numbers about the distraction."""
    import torch

    from streamanon.identity.codebook import default_codebook
    from streamanon.identity.ifa import DEFAULT_K, recast_identity
    from streamanon.identity.recognizer import load_recognizer

    chip, _ = align_chip(image_bgr, box)
    k = DEFAULT_K if k is None else k
    f_x, info = recast_identity(
        load_recognizer(), chips_to_tensor(chip), default_codebook(), k=k, weights=weights
    )
    h = info.cam_before[0].numpy()
    h_hat = info.cam_after[0].numpy()
    vmax = float(max(h.max(), h_hat.max()))
    dist = float(torch.linalg.vector_norm(f_x[0] - info.f[0]))
    stats = {
        "cam_energy_before": float(h.sum()),
        "cam_energy_after": float(h_hat.sum()),
        "distance": dist,
    }
    left = _label(_heat(chip, h, vmax), "H: top class")
    right = _label(_heat(chip, h_hat, vmax), f"H-hat: after IFA, K={k}")
    panel = np.concatenate([left, right], axis=1)
    caption = np.full((28, panel.shape[1], 3), 255, np.uint8)
    ratio = stats["cam_energy_after"] / max(stats["cam_energy_before"], 1e-12)
    text = f"CAM energy after/before = {ratio:.3f}   |f_x - f| = {dist:.2f} (same person < 0.6)"
    import cv2

    cv2.putText(caption, text, (6, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([panel, caption], axis=0), stats


def _render_vca(image_bgr: np.ndarray) -> np.ndarray:
    out = np.asarray(render_vca(image_bgr))
    if out.ndim != 3 or out.shape[2] != 3 or out.dtype != np.uint8:
        raise StreamanonError(f"render_vca returned {out.dtype} {out.shape}, not a BGR image")
    return out


def explain_main(argv: list[str]) -> int:
    """Entry point of ``streamanon explain``; returns the process exit code."""
    try:
        args = _parser().parse_args(argv)
        import cv2

        image = cv2.imread(args.image) if Path(args.image).is_file() else None
        if image is None:
            raise _ArgError(f"cannot read an image from {args.image!r}")
        out = Path(args.output)
        if out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
            raise _ArgError(f"output must be .png or .jpg, got {args.output!r}")
        # Before any work: never the input itself (same file by any name), never an existing
        # file unless asked.
        check_output(args.image, out, args.overwrite)
        weights = None
        if args.weights:
            try:
                weights = [float(v) for v in args.weights.split(",")]
            except ValueError as e:
                raise _ArgError(f"--weights must be numbers separated by commas: {e}") from e
        if args.k is not None and args.k < 1:
            raise _ArgError("-k must be at least 1")
        panel, _ = render_ifa(image, _face_box(image, args.box), args.k, weights)
        if args.vca:
            vca = _render_vca(image)
            h = round(vca.shape[0] * panel.shape[1] / vca.shape[1])
            panel = np.concatenate([panel, cv2.resize(vca, (panel.shape[1], max(h, 1)))], axis=0)
        with atomic_output(out) as tmp:
            write_image(tmp, panel)
        return 0
    except _ArgError as e:
        print(f"streamanon explain: {e}", file=sys.stderr)
        return 2
    except StreamanonError as e:
        print(f"streamanon explain: {e}", file=sys.stderr)
        return getattr(e, "exit_code", 1)
    except ValueError as e:  # bad box, bad weights for K, ...
        print(f"streamanon explain: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(explain_main(sys.argv[1:]))
