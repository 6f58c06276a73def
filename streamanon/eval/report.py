"""Markdown tables, JSON and optional plots of an evaluation result (`evaluate.evaluate`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from streamanon.eval.coverage import BINS, bin_name


def _pct(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{100 * x:.1f}"


def _num(x: float | None, fmt: str = "{:.3f}") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, float) and math.isinf(x):
        return "∞"
    return fmt.format(x)


def _thr(metric: str, t: float) -> str:
    return f"ℓ2 < {t:g}" if metric == "euclidean" else f"cos > {t:g}"


def privacy_table(results: dict[str, dict]) -> str:
    """(ReID, IDS) per recognizer and threshold, one row per method; like the paper's Table 1.

    ``results``: method name → evaluation result. ReID is vs the original photo; when the
    run had identity labels a third number gives ReID vs the person's other photos.
    """
    first = next(iter(results.values()))
    cols = [(name, p["metric"], t) for name, p in first["privacy"].items() for t in p["thresholds"]]
    head = "| method | " + " | ".join(f"{n} {_thr(m, t)}" for n, m, t in cols) + " |"
    lines = [head, "|---" * (len(cols) + 1) + "|"]
    for method, r in results.items():
        cells = []
        for n, _, t in cols:
            p = r["privacy"].get(n)
            if p is None:
                cells.append("–")
                continue
            k = _key(p["reid"], t)
            cell = f"({_pct(p['reid'][k])}, {_pct(p['swap'][k])}"
            if "reid_other" in p:
                cell += f", {_pct(p['reid_other'][k])}"
            cells.append(cell + ")")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _key(d: dict, t: float):
    """Threshold keys are floats in memory and strings after a JSON round trip."""
    for k in d:
        if float(k) == float(t):
            return k
    raise KeyError(t)


def utility_table(results: dict[str, dict]) -> str:
    """Detection rate, image quality, pose and expression agreement; like the paper's Table 3."""
    head = (
        "| method | faces | detected % | SSIM bg | PSNR bg dB | SSIM face | SSIM image "
        "| yaw err ° | pitch err ° | mouth state % | mouth err | eyes state % |"
    )
    lines = [head, "|---" * 12 + "|"]
    for method, r in results.items():
        u = r["utility"]
        lines.append(
            f"| {method} | {r['faces']} | {_pct(u.get('detection_rate'))} "
            f"| {_num(u.get('ssim_background'))} | {_num(u.get('psnr_background'), '{:.1f}')} "
            f"| {_num(u.get('ssim_face'))} | {_num(u.get('ssim_image'))} "
            f"| {_num(u.get('yaw', {}).get('mae'), '{:.1f}')} "
            f"| {_num(u.get('pitch', {}).get('mae'), '{:.1f}')} "
            f"| {_pct(u.get('mouth', {}).get('state'))} "
            f"| {_num(u.get('mouth', {}).get('mae'))} "
            f"| {_pct(u.get('eyes', {}).get('state'))} |"
        )
    return "\n".join(lines)


def video_table(results: dict[str, dict]) -> str:
    """Per video: tracks, identity consistency, flicker, leaked frames (per recognizer)."""
    lines = [
        "| method | video | tracks | recognizer | identity kept % | leaked frames | flicker |",
        "|---" * 7 + "|",
    ]
    for method, r in results.items():
        for key, v in r.get("video", {}).items():
            for rec, cons in v["identity_consistency"].items():
                lf = v["leaked_frames"][rec]
                lines.append(
                    f"| {method} | {key} | {v['tracks']} | {rec} | {_pct(cons)} "
                    f"| {lf['leaked']}/{lf['frames']} | {_num(v['flicker'], '{:.2f}')} |"
                )
    return "\n".join(lines)


def to_markdown(results: dict[str, dict]) -> str:
    parts = [
        "Privacy: (ReID %, IDS %"
        + (", ReID vs other photos %" if _labelled(results) else "")
        + ") per recognizer and threshold; lower is more private.\n",
        privacy_table(results),
        "\nUtility (faces detected on the original; 'bg' = outside the grown face boxes):\n",
        utility_table(results),
    ]
    if any(r.get("video") for r in results.values()):
        parts += ["\nVideo:\n", video_table(results)]
    if any(r.get("coverage") for r in results.values()):
        parts += [
            "\nCoverage (reference faces, RetinaFace + CenterFace native [+ dlib MMOD], covered "
            "when every landmark patch and 6 of 9 cells changed), covered/faces per height bin:\n",
            coverage_table(results),
        ]
    return "\n".join(parts) + "\n"


def coverage_table(results: dict[str, dict]) -> str:
    bins = [bin_name(lo, hi) for lo, hi in BINS]
    lines = [
        "| method | all | " + " | ".join(f"{b} px" for b in bins) + " | uncovered >= 48 px |",
        "|---" * (3 + len(bins)) + "|",
    ]
    for name, r in results.items():
        c = r.get("coverage")
        if not c:
            continue
        cells = []
        for b in bins:
            v = c["bins"][b]
            cells.append(f"{v['covered']}/{v['faces']}" if v["faces"] else "–")
        al = "–" if c["coverage"] is None else f"{100 * c['coverage']:.1f} %"
        lines.append(f"| {name} | {al} | {' | '.join(cells)} | {c['uncovered_ge48']} |")
    return "\n".join(lines)


def _labelled(results: dict[str, dict]) -> bool:
    return any("reid_other" in p for r in results.values() for p in r["privacy"].values())


def _clean(obj):
    """JSON has no NaN/inf: write them as null / strings."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, float):
        if math.isnan(obj):
            return None
        if math.isinf(obj):
            return "inf" if obj > 0 else "-inf"
    return obj


def write_json(result: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(_clean(result), indent=2, sort_keys=True) + "\n")


def plot_thresholds(results: dict[str, dict], path: str | Path) -> bool:
    """ReID and IDS vs threshold per recognizer (PNG). False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    first = next(iter(results.values()))
    recs = list(first["privacy"])
    fig, axes = plt.subplots(1, len(recs), figsize=(5 * len(recs), 4), squeeze=False)
    for ax, rec in zip(axes[0], recs, strict=True):
        for method, r in results.items():
            p = r["privacy"].get(rec)
            if not p:
                continue
            ts = p["thresholds"]
            ax.plot(
                ts,
                [100 * (p["reid"][_key(p["reid"], t)] or 0) for t in ts],
                "o-",
                label=f"{method} ReID",
            )
            ax.plot(
                ts,
                [100 * (p["swap"][_key(p["swap"], t)] or 0) for t in ts],
                "x--",
                label=f"{method} IDS",
            )
        ax.set_title(f"{rec} ({p['metric']})")
        ax.set_xlabel("threshold")
        ax.set_ylabel("%")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
