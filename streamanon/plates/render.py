"""Synthetic license plates and hard negatives, composited onto real images.

`render_plate` draws one plate of a random national format (EU with blue band, yellow rear
UK/NL, US-style with state name and coloured characters, Indian, Middle-East, black plates,
two-line square plates, motorcycle plates) from scratch: colours, border, screws, random
characters in DejaVu (when the system has it) or OpenCV Hershey fonts. `paste_plate` warps
it with a random perspective into a background and returns the plate's box; `photometric`
adds blur, noise, night, glare and JPEG artefacts to the whole sample. `paste_negative` adds
things a plate detector must not fire on: text painted straight on walls and signs of
non-plate shapes, car badges and emblems, date/time overlays, tail lights, window grids.

Nothing here is copied from a plate generator; the formats are drawn from their public
descriptions (sizes and colours).
"""

from __future__ import annotations

import string
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

LETTERS = string.ascii_uppercase
DIGITS = string.digits
_FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
_FONTS = (
    "DejaVuSansCondensed-Bold.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSansCondensed.ttf",
    "DejaVuSerifCondensed-Bold.ttf",
    "DejaVuSansMono.ttf",
)
_HERSHEY = (
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_TRIPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_PLAIN,
)
STATES = ("TEXAS", "ARIZONA", "OHIO", "FLORIDA", "CALIFORNIA", "NEW YORK", "QUEBEC", "UTAH",
          "ONTARIO", "NEVADA", "GEORGIA", "OREGON", "IOWA", "MAINE", "DUBAI", "VICTORIA")  # fmt: skip
WORDS = ("HOTEL", "PHARMACY", "OPEN", "BAKERY", "EXIT", "CAFE", "BANK", "PARKING", "SALE",
         "POLICE", "TAXI", "STOP", "BUS", "MARKET", "BAR", "SHOP", "RESTAURANT", "KEBAB",
         "BOULANGERIE", "APOTHEKE", "STRASSE", "AVENUE", "30", "24H", "NO 12", "WC")  # fmt: skip


BADGES = ("TDI", "GTI", "2.0 TDI", "HYBRID", "4MOTION", "QUATTRO", "ALTIMA", "CAMRY", "COROLLA",
          "AVIATOR", "GOL", "CIVIC", "AMG", "XDRIVE", "SPORT", "TURBO", "AWD", "4X4", "LIMITED",
          "FORD", "TOYOTA", "HONDA", "KIA", "FIAT", "JEEP", "DODGE", "RENAULT", "DIESEL", "V6")  # fmt: skip


@lru_cache(maxsize=64)
def _pil_font(name: str, size: int):
    from PIL import ImageFont

    return ImageFont.truetype(str(_FONT_DIR / name), size)


def _have_pil_fonts() -> bool:
    try:
        import PIL  # noqa: F401
    except ImportError:
        return False
    return all((_FONT_DIR / f).is_file() for f in _FONTS[:1])


def draw_text(
    canvas: np.ndarray,
    text: str,
    box: tuple[int, int, int, int],
    color: tuple[int, int, int],
    rng: np.random.Generator,
) -> None:
    """Draw `text` filling the (x1, y1, x2, y2) box of `canvas` (BGR uint8) in place."""
    x1, y1, x2, y2 = box
    bw, bh = max(x2 - x1, 4), max(y2 - y1, 4)
    if _have_pil_fonts() and rng.random() < 0.7:
        from PIL import Image, ImageDraw

        font = _pil_font(_FONTS[int(rng.integers(len(_FONTS)))], 64)
        left, top, right, bottom = font.getbbox(text)
        img = Image.new("L", (right - left + 8, bottom - top + 8), 0)
        ImageDraw.Draw(img).text((4 - left, 4 - top), text, font=font, fill=255)
        glyphs = np.asarray(img)
    else:
        font = _HERSHEY[int(rng.integers(len(_HERSHEY)))]
        thick = int(rng.integers(2, 5))
        (tw, th), base = cv2.getTextSize(text, font, 2.0, thick)
        glyphs = np.zeros((th + base + 8, tw + 8), np.uint8)
        cv2.putText(glyphs, text, (4, th + 4), font, 2.0, 255, thick, cv2.LINE_AA)
    glyphs = cv2.resize(glyphs, (bw, bh), interpolation=cv2.INTER_AREA)
    alpha = (glyphs.astype(np.float32) / 255.0)[..., None]
    roi = canvas[y1 : y1 + bh, x1 : x1 + bw]
    alpha = alpha[: roi.shape[0], : roi.shape[1]]
    roi[...] = (roi * (1 - alpha) + np.asarray(color, np.float32) * alpha).astype(np.uint8)


def _plate_text(rng: np.random.Generator, n: int) -> str:
    out = []
    for i in range(n):
        pool = DIGITS if rng.random() < 0.5 else LETTERS
        out.append(pool[int(rng.integers(len(pool)))])
        if 0 < i < n - 1 and rng.random() < 0.15:
            out.append(" " if rng.random() < 0.6 else "-")
    return "".join(out)


def _jitter(color, rng: np.random.Generator, amount: int = 20) -> tuple[int, int, int]:
    c = np.clip(np.asarray(color) + rng.integers(-amount, amount + 1, 3), 0, 255)
    return tuple(int(v) for v in c)


FORMATS = ("eu", "eu_yellow", "uk", "us", "india", "mideast", "black", "two_line", "moto",
           "china", "plain", "india_band", "china_green", "india_two")  # fmt: skip


def render_plate(rng: np.random.Generator, fmt: str | None = None) -> np.ndarray:
    """One synthetic plate, BGR uint8, about 64 px tall (width from its format)."""
    fmt = fmt or FORMATS[int(rng.integers(len(FORMATS)))]
    white, yellow = (235, 238, 240), (20, 200, 245)
    bg, fg, band, lines, aspect = white, (20, 20, 20), False, 1, 4.7
    top_text = None
    if fmt == "eu":
        band = True
    elif fmt == "eu_yellow":
        bg, band = yellow, True
    elif fmt == "uk":
        bg, band = (yellow if rng.random() < 0.5 else white), rng.random() < 0.5
    elif fmt == "us":
        aspect = 2.0
        bg = white if rng.random() < 0.6 else tuple(int(v) for v in rng.integers(120, 256, 3))
        fg = [(20, 20, 20), (120, 40, 10), (30, 30, 160), (20, 90, 20)][int(rng.integers(4))]
        top_text = STATES[int(rng.integers(len(STATES)))]
    elif fmt == "india":
        aspect, bg = 4.4, (white if rng.random() < 0.7 else yellow)
    elif fmt == "mideast":
        aspect = 4.0 if rng.random() < 0.5 else 2.2
        top_text = "".join(rng.choice(list("UAEKSAQTRDB"), 3))
    elif fmt == "black":
        bg, fg = (25, 25, 25), (220, 220, 220)
    elif fmt == "two_line":
        aspect, lines = 1.8, 2
    elif fmt == "moto":
        aspect, lines = 1.3, 2
        bg = white if rng.random() < 0.6 else yellow
    elif fmt == "china":
        bg, fg, aspect = (160, 60, 10), (245, 245, 245), 3.1
    elif fmt == "india_band":  # white, a blue band on the left (the IND hologram plate)
        aspect, band = 4.4, True
    elif fmt == "china_green":  # new-energy plates: light green, dark characters
        bg, aspect = (150, 225, 170), 3.5
    elif fmt == "india_two":  # two-line white or yellow plate, sometimes with the band
        aspect, lines, band = 1.8, 2, rng.random() < 0.4
        bg = white if rng.random() < 0.7 else yellow
    else:  # plain: random colours
        bg = tuple(int(v) for v in rng.integers(0, 256, 3))
        fg = tuple(int(255 - v) for v in bg)
        aspect = float(rng.uniform(2.0, 5.2))
    h = 64
    w = int(round(h * aspect * rng.uniform(0.92, 1.08)))
    plate = np.empty((h, w, 3), np.uint8)
    plate[...] = _jitter(bg, rng)
    if rng.random() < 0.3:  # gentle gradient / texture
        ramp = np.linspace(rng.uniform(-25, 0), rng.uniform(0, 25), w, dtype=np.float32)
        plate = np.clip(plate + ramp[None, :, None], 0, 255).astype(np.uint8)
    x0 = 4
    if band:
        bw = int(h * 0.18 * aspect / 4.7 * 4.7 / 2.2)
        bw = max(8, min(bw, w // 7))
        plate[:, :bw] = _jitter((150, 50, 0), rng, 15)
        cv2.circle(plate, (bw // 2, h // 3), max(2, bw // 4), (0, 200, 255), 1, cv2.LINE_AA)
        draw_text(plate, LETTERS[int(rng.integers(26))], (2, int(h * 0.6), bw - 2, h - 5),
                  (240, 240, 240), rng)  # fmt: skip
        x0 = bw + 4
    y0, y1 = 6, h - 6
    if top_text is not None:
        draw_text(plate, top_text, (w // 4, 3, 3 * w // 4, int(h * 0.22)), _jitter(fg, rng), rng)
        y0 = int(h * 0.26)
    if lines == 1:
        n = int(rng.integers(5, 9))
        draw_text(plate, _plate_text(rng, n), (x0 + 2, y0, w - 6, y1), _jitter(fg, rng, 10), rng)
    else:
        mid = (y0 + y1) // 2
        draw_text(plate, _plate_text(rng, int(rng.integers(2, 5))), (x0 + w // 6, y0, w - w // 6, mid - 2),
                  _jitter(fg, rng, 10), rng)  # fmt: skip
        draw_text(plate, _plate_text(rng, int(rng.integers(3, 6))), (x0 + 4, mid + 2, w - 6, y1),
                  _jitter(fg, rng, 10), rng)  # fmt: skip
    if rng.random() < 0.7:  # border
        col = fg if rng.random() < 0.7 else (90, 90, 90)
        cv2.rectangle(plate, (1, 1), (w - 2, h - 2), col, int(rng.integers(1, 4)))
    if rng.random() < 0.4:  # screws
        for sx in (w // 5, 4 * w // 5):
            cv2.circle(plate, (sx, 5), 2, (140, 140, 140), -1)
    return plate


def _quad(w: float, h: float, rng: np.random.Generator) -> np.ndarray:
    """Plate corners after a random view: rotation, yaw (perspective), shear."""
    pts = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32) - [w / 2, h / 2]
    yaw = rng.normal(0, 0.18)
    pts[:, 1] *= 1 + yaw * np.sign(pts[:, 0]) * 0.5  # near side taller
    pts[:, 0] *= np.cos(min(abs(yaw) * 2, 1.2))
    pts[:, 0] += rng.normal(0, 0.06) * pts[:, 1]  # shear
    a = rng.normal(0, 0.06)  # roll
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]], np.float32)
    return (pts @ rot.T).astype(np.float32)


def paste_plate(
    image: np.ndarray,
    plate: np.ndarray,
    height: float,
    centre: tuple[float, float],
    rng: np.random.Generator,
) -> np.ndarray:
    """Warp `plate` (its height `height` px) into `image` at `centre`, in place; -> xyxy box."""
    ph, pw = plate.shape[:2]
    s = height / ph
    quad = _quad(pw * s, ph * s, rng) + np.asarray(centre, np.float32)
    src = np.array([[0, 0], [pw, 0], [pw, ph], [0, ph]], np.float32)
    m = cv2.getPerspectiveTransform(src, quad)
    H, W = image.shape[:2]
    x1, y1 = np.floor(quad.min(0)).astype(int) - 3
    x2, y2 = np.ceil(quad.max(0)).astype(int) + 3
    x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, W), min(y2, H)
    if x2 - x1 < 2 or y2 - y1 < 2:
        return np.array([0, 0, 0, 0], np.float32)
    shift = np.array([[1, 0, -x1], [0, 1, -y1], [0, 0, 1]], np.float64)
    mm = shift @ m
    size = (x2 - x1, y2 - y1)
    warped = cv2.warpPerspective(
        plate, mm, size, flags=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    )
    mask = cv2.warpPerspective(np.full((ph, pw), 255, np.uint8), mm, size, flags=cv2.INTER_LINEAR)
    roi = image[y1:y2, x1:x2]
    if rng.random() < 0.5:  # plate holder / bumper recess: a darker frame around the plate
        k = max(3, int(height * 0.25)) | 1
        frame = cv2.dilate(mask, np.ones((k, k), np.uint8))
        fa = (frame.astype(np.float32) / 255.0)[..., None] * rng.uniform(0.3, 0.9)
        roi[...] = (roi * (1 - fa) + _jitter((30, 30, 30), rng, 25) * fa).astype(np.uint8)
    light = rng.uniform(0.55, 1.15)  # the plate's own exposure in its scene
    a = (mask.astype(np.float32) / 255.0)[..., None]
    roi[...] = np.clip(roi * (1 - a) + warped * light * a, 0, 255).astype(np.uint8)
    box = np.concatenate([quad.min(0), quad.max(0)])
    return np.clip(box, [0, 0, 0, 0], [W, H, W, H]).astype(np.float32)


def paste_negative(image: np.ndarray, rng: np.random.Generator, scale: float) -> None:
    """One hard negative in place: façade text, a sign of non-plate shape, tail lights, windows."""
    H, W = image.shape[:2]
    kind = rng.random()
    cx, cy = rng.uniform(0, W), rng.uniform(0, H)
    if kind < 0.3:  # text painted on a wall / shop sign (letters straight on the scene)
        word = WORDS[int(rng.integers(len(WORDS)))]
        if rng.random() < 0.3:
            word += " " + WORDS[int(rng.integers(len(WORDS)))]
        th = scale * rng.uniform(0.4, 1.2)
        tw = th * len(word) * rng.uniform(0.5, 0.8)
        x1, y1 = int(cx - tw / 2), int(cy - th / 2)
        x1, y1 = max(0, x1), max(0, y1)
        x2, y2 = min(W, int(x1 + tw)), min(H, int(y1 + th))
        if x2 - x1 > 6 and y2 - y1 > 4:
            col = tuple(int(v) for v in rng.integers(0, 256, 3))
            if rng.random() < 0.4:  # on a long board (much wider than a plate), or tall one
                pad = int(th * 0.4)
                bg = tuple(int(v) for v in rng.integers(0, 256, 3))
                cv2.rectangle(image, (x1 - pad * 3, y1 - pad), (x2 + pad * 3, y2 + pad), bg, -1)
            draw_text(image, word, (x1, y1, x2, y2), col, rng)
    elif kind < 0.5:  # car badges: chrome model names, oval / round emblems, dealer stickers
        _paste_badge(image, rng, scale, cx, cy)
    elif kind < 0.55:  # a camera's date / time overlay
        text = f"20{rng.integers(10, 27)}-{rng.integers(1, 13):02d}-{rng.integers(1, 29):02d}"
        if rng.random() < 0.6:
            hms = rng.integers(0, [24, 60, 60])
            text += f" {hms[0]:02d}:{hms[1]:02d}:{hms[2]:02d}"
        th = scale * rng.uniform(0.3, 0.8)
        x1, y1 = int(max(0, cx)), int(max(0, cy))
        x2, y2 = min(W, int(x1 + th * len(text) * 0.6)), min(H, int(y1 + th))
        if x2 - x1 > 6 and y2 - y1 > 4:
            draw_text(image, text, (x1, y1, x2, y2), _jitter((235, 235, 235), rng, 20), rng)
    elif kind < 0.75:  # tail / head lights: bright red / orange / white blobs, often a pair
        r = scale * rng.uniform(0.3, 1.0)
        col = [(30, 30, 230), (20, 120, 255), (230, 230, 240)][int(rng.integers(3))]
        gap = r * rng.uniform(4, 12)
        for dx in (-gap / 2, gap / 2) if rng.random() < 0.7 else (0,):
            axes = (max(1, int(r * rng.uniform(1, 2.5))), max(1, int(r * rng.uniform(0.4, 1))))
            cv2.ellipse(image, (int(cx + dx), int(cy)), axes, 0, 0, 360, col, -1, cv2.LINE_AA)
            cv2.ellipse(image, (int(cx + dx), int(cy)), (max(1, axes[0] // 2), max(1, axes[1] // 2)),
                        0, 0, 360, (220, 230, 255), -1, cv2.LINE_AA)  # fmt: skip
    else:  # window grid / façade tiles
        cell = scale * rng.uniform(0.8, 2.0)
        n, m = int(rng.integers(2, 6)), int(rng.integers(1, 4))
        col = tuple(int(v) for v in rng.integers(0, 120, 3))
        for i in range(n):
            for j in range(m):
                x = int(cx + i * cell * 1.5)
                y = int(cy + j * cell * 1.3)
                cv2.rectangle(image, (x, y), (int(x + cell), int(y + cell * 0.8)), col, -1)


def _paste_badge(
    image: np.ndarray, rng: np.random.Generator, scale: float, cx: float, cy: float
) -> None:
    """A car badge in place: silver letters with a dark edge, or an emblem (a chrome ring
    around letters or a dark disc), about `scale` px tall. The plate detector's false boxes on
    real cars are mostly these."""
    H, W = image.shape[:2]
    silver = _jitter((200, 200, 205), rng, 40)
    kind = rng.random()
    if kind < 0.5:  # chrome model name
        word = BADGES[int(rng.integers(len(BADGES)))]
        th = scale * rng.uniform(0.3, 0.8)
        tw = th * len(word) * rng.uniform(0.55, 0.9)
        x1, y1 = int(max(0, cx - tw / 2)), int(max(0, cy - th / 2))
        x2, y2 = min(W, int(x1 + tw)), min(H, int(y1 + th))
        if x2 - x1 > 6 and y2 - y1 > 4:
            off = max(1, int(th * 0.08))
            if y2 + off < H and x2 + off < W:
                draw_text(image, word, (x1 + off, y1 + off, x2 + off, y2 + off), (20, 20, 20), rng)
            draw_text(image, word, (x1, y1, x2, y2), silver, rng)
    else:  # emblem: oval or round ring, letters or a dark disc inside
        r = scale * rng.uniform(0.4, 1.0)
        ax = (max(2, int(r * rng.uniform(1.0, 2.0))), max(2, int(r)))
        c = (int(cx), int(cy))
        inner = _jitter((40, 40, 60), rng, 40) if rng.random() < 0.6 else silver
        cv2.ellipse(image, c, ax, 0, 0, 360, inner, -1, cv2.LINE_AA)
        cv2.ellipse(image, c, ax, 0, 0, 360, silver, max(1, int(r * 0.15)), cv2.LINE_AA)
        if rng.random() < 0.7:
            word = BADGES[int(rng.integers(len(BADGES)))][:4]
            x1, y1 = int(cx - ax[0] * 0.7), int(cy - ax[1] * 0.5)
            x2, y2 = int(cx + ax[0] * 0.7), int(cy + ax[1] * 0.5)
            if x1 >= 0 and y1 >= 0 and x2 < W and y2 < H and x2 - x1 > 6 and y2 - y1 > 4:
                draw_text(image, word, (x1, y1, x2, y2), silver, rng)


def photometric(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blur, motion blur, noise, night, glare, colour cast and JPEG on a whole sample."""
    img = image
    if rng.random() < 0.3:
        k = int(rng.integers(1, 3)) * 2 + 1
        img = cv2.GaussianBlur(img, (k, k), 0)
    if rng.random() < 0.15:
        k = int(rng.integers(3, 10))
        kern = np.zeros((k, k), np.float32)
        kern[k // 2, :] = 1.0 / k
        if rng.random() < 0.5:
            kern = cv2.warpAffine(
                kern,
                cv2.getRotationMatrix2D(
                    (k / 2 - 0.5, k / 2 - 0.5), float(rng.uniform(0, 180)), 1.0
                ),
                (k, k),
            )
            kern /= max(kern.sum(), 1e-6)
        img = cv2.filter2D(img, -1, kern)
    f = img.astype(np.float32)
    if rng.random() < 0.2:  # night: dark, gamma, blue-ish
        f = 255.0 * (f / 255.0) ** rng.uniform(1.5, 2.5) * rng.uniform(0.4, 0.9)
        f *= np.array([1.1, 1.0, 0.9], np.float32)
    else:
        f = f * rng.uniform(0.7, 1.3) + rng.uniform(-25, 25)
        f *= rng.uniform(0.9, 1.1, 3).astype(np.float32)
    if rng.random() < 0.15:  # glare
        H, W = f.shape[:2]
        g = np.zeros((H, W), np.float32)
        cv2.circle(
            g,
            (int(rng.uniform(0, W)), int(rng.uniform(0, H))),
            int(rng.uniform(0.05, 0.3) * max(H, W)),
            1.0,
            -1,
        )
        g = cv2.GaussianBlur(g, (0, 0), max(H, W) * 0.05)
        f += g[..., None] * rng.uniform(60, 180)
    if rng.random() < 0.4:
        f += rng.normal(0, rng.uniform(2, 10), f.shape).astype(np.float32)
    img = np.clip(f, 0, 255).astype(np.uint8)
    if rng.random() < 0.4:
        q = int(rng.integers(30, 90))
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])
        if ok:
            img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return img
