"""Render the fixed naturalness panel with a face method; print/write the metric table and sheet.

    python scripts/naturalness_panel.py --method swap --json out.json --sheet out.png
    python scripts/naturalness_panel.py --method real --json real.json   # the real range

The panel (tests/data/naturalness_panel.json) lists real photos from ../shared/data. Per face:
the largest face found by CenterFace + dlib 68 on the original; the method's output; the
artefact metrics of `streamanon.eval.naturalness`; the distance of the output face to the
original and to the person's other photo by two judges, dlib (also Ψ, the method's own
verifier) and FaceNet (another family, `streamanon.eval.facenet`) (privacy); and yaw / mouth
agreement.

``--method real`` measures the unmodified originals AND the person's other photos (each its
own reference): the range two real photos of a person span.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PANEL = REPO / "tests" / "data" / "naturalness_panel.json"
SHARED = REPO.parent / "shared" / "data"


def load_panel(path: Path = PANEL) -> list[dict]:
    return json.loads(path.read_text())["faces"]


class _Recorder:
    """Records the intended geometry Ŝ_x of every render (crop coords, with S_x beside it)."""

    def __init__(self) -> None:
        self.calls: list[tuple[np.ndarray, np.ndarray]] = []

    def __enter__(self) -> _Recorder:
        import streamanon.visual.delegates as D

        self._orig = D.fit_geometry

        def wrapped(delegates, landmarks68_crop, *a, **k):
            out = self._orig(delegates, landmarks68_crop, *a, **k)
            self.calls.append((np.asarray(landmarks68_crop, np.float64), np.asarray(out)))
            return out

        D.fit_geometry = wrapped
        return self

    def __exit__(self, *exc) -> None:
        import streamanon.visual.delegates as D

        D.fit_geometry = self._orig

    def intended(self, lm_frame: np.ndarray) -> np.ndarray | None:
        """Ŝ_x of the last render, in frame coordinates (S_x in the crop fitted to ``lm_frame``)."""
        from streamanon.visual.align import STABLE, similarity_fit, transform_points

        if not self.calls:
            return None
        cur, out = self.calls[-1]
        m = similarity_fit(cur[STABLE], np.asarray(lm_frame, np.float64)[STABLE])
        return transform_points(out, m)


def largest(dets):
    i = int(np.argmax(dets.area))
    return dets[np.array([i])]


def run_panel(method: str, seed: int = 0, limit: int | None = None) -> dict:
    import cv2

    from streamanon.anonymizer import Anonymizer
    from streamanon.detect.landmarks import Landmarks68
    from streamanon.eval import naturalness as N
    from streamanon.eval.facenet import FaceNetJudge
    from streamanon.eval.metrics import mouth_opening
    from streamanon.eval.recognizers import DlibRecognizer
    from streamanon.eval.sheet import face_crop
    from streamanon.registry import make_detector
    from streamanon.visual.pose import face_pose

    det = make_detector("centerface", thresh=0.5, landmarks=True, low_thresh=0.5)
    lm68 = Landmarks68()
    judges = {"dlib": DlibRecognizer(), "facenet": FaceNetJudge()}
    rows, crops = [], []
    elapsed = 0.0
    for entry in load_panel()[:limit]:
        files = [entry["file"]] + (entry.get("other", []) if method == "real" else [])
        for k, rel in enumerate(files):
            img = cv2.imread(str(SHARED / rel), cv2.IMREAD_COLOR)
            if img is None:
                raise SystemExit(f"naturalness_panel: cannot read {SHARED / rel}")
            found = det(img)
            if len(found) == 0:
                rows.append({"file": rel, "error": "no face on the original"})
                continue
            face = largest(found)
            box, lm = face.xyxy[0], face.landmarks68[0].astype(np.float64)
            row: dict = {"file": rel, "tags": entry.get("tags", []), "real_other": k > 0}
            if method == "real":
                out, ref, intended = img, None, None
            else:
                anon = Anonymizer(method=method, seed=seed)
                with _Recorder() as rec_geom:
                    t0 = time.perf_counter()
                    out = anon(img)
                    elapsed += time.perf_counter() - t0
                intended = rec_geom.intended(lm)
                ref = img
                rep = anon.face_anonymizer.report()
                row["fallbacks"] = rep.get("fallbacks", {})
            again = det(out)
            lm_out = lm68(out, face)[0].astype(np.float64)
            conf = N.detector_confidence(box, again.xyxy, again.score)
            if ref is None:
                m = N.measure_face(img, img, lm, landmarks_out=lm_out, confidence=conf)
                m["skin_de"] = N.skin_delta_e(img, lm)
                m["seam"] = N.seam_energy(img, lm)
            else:
                m = N.measure_face(ref, out, lm, landmarks_out=lm_out, intended68=intended,
                                   confidence=conf)  # fmt: skip
                # The points every renderer must keep from the person: jaw and mouth opening.
                m["refit_person"] = N.refit_error(lm_out, lm, np.r_[0:17, 60:68])
            row.update(m)
            try:
                row["yaw_err"] = abs(float(face_pose(lm_out)[0] - face_pose(lm)[0]))
            except ValueError:
                row["yaw_err"] = float("nan")
            mo, ma = mouth_opening(lm[None])[0], mouth_opening(lm_out[None])[0]
            row["mouth_open"], row["mouth_open_out"] = float(mo), float(ma)
            if method != "real":
                for jname, rec in judges.items():
                    e_o, e_a = rec.embed(img, box[None]), rec.embed(out, box[None])
                    row[f"{jname}_dist"] = float(np.linalg.norm(e_o - e_a))
                    others = []
                    for o_rel in entry.get("other", []):
                        o_img = cv2.imread(str(SHARED / o_rel), cv2.IMREAD_COLOR)
                        o_found = det(o_img) if o_img is not None else []
                        if len(o_found):
                            e = rec.embed(o_img, largest(o_found).xyxy)
                            others.append(float(np.linalg.norm(e - e_a)))
                    row[f"{jname}_dist_other"] = min(others) if others else float("nan")
            rows.append(row)
            if k == 0:
                crops.append((face_crop(img, box), face_crop(out, box), Path(rel).parent.name))
    return {"method": method, "faces": rows, "crops": crops, "seconds_anonymize": elapsed}


METRICS = ("skin_de", "seam", "outliers_eyes", "outliers_mouth", "refit", "refit_person",
           "confidence", "yaw_err", "dlib_dist", "dlib_dist_other", "facenet_dist",
           "facenet_dist_other")  # fmt: skip


def summary(rows: list[dict]) -> dict:
    from streamanon.eval.naturalness import summarise

    ok = [r for r in rows if "error" not in r]
    s = summarise([{k: r[k] for k in METRICS if k in r} for r in ok])
    s["faces"] = len(ok)
    mo = np.array([r["mouth_open"] for r in ok]) > 0.15
    ma = np.array([r["mouth_open_out"] for r in ok]) > 0.15
    s["mouth_state_agreement"] = float((mo == ma).mean()) if ok else float("nan")
    s["detected"] = float(np.mean([r["confidence"] >= 0.5 for r in ok])) if ok else float("nan")
    if "dlib_dist" in (ok[0] if ok else {}):
        s["reid_0.6"] = float(np.mean([r["dlib_dist"] < 0.6 for r in ok]))
        s["reid_other_0.6"] = float(np.mean([r["dlib_dist_other"] < 0.6 for r in ok]))
    if "facenet_dist" in (ok[0] if ok else {}):
        from streamanon.eval.facenet import THRESHOLD

        s["reid_facenet"] = float(np.mean([r["facenet_dist"] < THRESHOLD for r in ok]))
        s["reid_other_facenet"] = float(np.mean([r["facenet_dist_other"] < THRESHOLD for r in ok]))
    return s


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", default="swap", help="a face method, or 'real' (no change)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="first N panel faces only")
    p.add_argument("--json", help="write rows + summary here")
    p.add_argument("--sheet", help="write the contact sheet (original | output) here")
    args = p.parse_args(argv)
    if not SHARED.is_dir():
        print(f"naturalness_panel: needs {SHARED}", file=sys.stderr)
        return 2
    res = run_panel(args.method, args.seed, args.limit)
    s = summary(res["faces"])
    s["seconds_anonymize"] = res["seconds_anonymize"]
    for r in res["faces"]:
        cells = " ".join(f"{k}={r[k]:.3f}" for k in METRICS if isinstance(r.get(k), float))
        print(f"{r['file']}: {r.get('error', cells)}")
    print(json.dumps(s, indent=1))
    from streamanon.eval.sheet import contact_sheet, write_json, write_png

    if args.json:
        write_json({"method": args.method, "summary": s, "faces": res["faces"]}, args.json)
    if args.sheet and res["crops"]:
        rows = [[o, a] for o, a, _ in res["crops"]]
        labels = [[name, args.method] for _, _, name in res["crops"]]
        write_png(contact_sheet(rows, labels, columns=4), args.sheet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
