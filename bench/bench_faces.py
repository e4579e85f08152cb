"""Benchmark of the face pipeline (issue 3): parity with the original ``mtcnn`` package, detection
quality on hand-drawn boxes, speed, and no-face pictures. Prints the figures and the machine.

    .venv/bin/python bench/bench_faces.py [--data ../shared/data] [--threads N] [--repeats 3]

Needs ``../shared/data`` (see its README); never writes into it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from machine import cpu_model  # bench/machine.py (scripts run from bench/)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ORIGINAL_S_PER_PHOTO = 0.9  # the mtcnn 1.0.0 package (TensorFlow) on these photos, issue 3
NO_FACE = ["dlib/dog.jpg", "dlib/dogs.jpg", "dlib/eagle.jpg", "dlib/giraffe.jpg", "dlib/horses.jpg"]



def iou(a, b) -> float:
    ax1, ay1, aw, ah = a
    bx1, by1, bw, bh = b
    ix = max(0.0, min(ax1 + aw, bx1 + bw) - max(ax1, bx1))
    iy = max(0.0, min(ay1 + ah, by1 + bh) - max(ay1, by1))
    inter = ix * iy
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def match(refs: list, dets: list, thr: float):
    """Greedy one-to-one matching by IoU (highest first). Returns [(ref_i, det_j, iou)]."""
    pairs = sorted(((iou(r, d), i, j) for i, r in enumerate(refs) for j, d in enumerate(dets)),
                   reverse=True)
    used_r, used_d, out = set(), set(), []
    for v, i, j in pairs:
        if v < thr:
            break
        if i in used_r or j in used_d:
            continue
        used_r.add(i)
        used_d.add(j)
        out.append((i, j, v))
    return out


def load_image(path: Path):
    from PIL import Image

    im = Image.open(path)
    im.load()
    return im


def parity(name: str, ref: dict, root: Path, detect, files=None) -> dict:
    """Share of reference faces matched at IoU >= 0.7, mean IoU, landmark error, extras."""
    n_ref = n_match = 0
    ious, lm_px, lm_rel = [], [], []
    extras = extras_conf = 0
    missed, extra_list = [], []
    keys = sorted(ref) if files is None else files
    for key in keys:
        faces = detect(load_image(root / key))
        refs = ref[key]
        rb = [r["box"] for r in refs]
        db = [f.box for f in faces]
        m = match(rb, db, 0.7)
        n_ref += len(refs)
        n_match += len(m)
        matched_d = {j for _, j, _ in m}
        matched_r = {i for i, _, _ in m}
        for i, j, v in m:
            ious.append(v)
            rk = refs[i]["keypoints"]
            fk = faces[j].keypoints
            eye = float(np.hypot(*(np.subtract(rk["right_eye"], rk["left_eye"])))) or 1.0
            for k in rk:
                d = float(np.hypot(*(np.subtract(fk[k], rk[k]))))
                lm_px.append(d)
                lm_rel.append(d / eye)
        for i, r in enumerate(refs):
            if i not in matched_r:
                missed.append((key, r["box"], r["confidence"]))
        for j, f in enumerate(faces):
            if j not in matched_d:
                # an "extra" is a face that no reference face overlaps at IoU >= 0.5
                if max((iou(f.box, r) for r in rb), default=0.0) < 0.5:
                    extras += 1
                    extras_conf += f.confidence >= 0.9
                    extra_list.append((key, [round(v, 1) for v in f.box], round(f.confidence, 4)))
    return {
        "set": name, "images": len(keys), "reference_faces": n_ref, "matched": n_match,
        "matched_share": n_match / n_ref if n_ref else float("nan"),
        "mean_iou": statistics.fmean(ious) if ious else float("nan"),
        "landmark_px": statistics.fmean(lm_px) if lm_px else float("nan"),
        "landmark_eye": statistics.fmean(lm_rel) if lm_rel else float("nan"),
        "extras": extras, "extras_conf_ge_0.9": extras_conf,
        "missed": missed, "extra_list": extra_list,
    }


def read_dlib_boxes(root: Path) -> dict[str, list]:
    """``dlib/*_face_boxes.xml``: {image file: [(x, y, w, h)]}; ``ignore`` boxes are skipped."""
    import xml.etree.ElementTree as ET

    out: dict[str, list] = {}
    for xml in sorted((root / "photos" / "dlib").glob("*_face_boxes.xml")):
        for img in ET.parse(xml).getroot().iter("image"):
            f = img.get("file")
            boxes = out.setdefault(f"dlib/{Path(f).name}", [])
            for b in img.iter("box"):
                if b.get("ignore") == "1":
                    continue
                boxes.append((float(b.get("left")), float(b.get("top")),
                              float(b.get("width")), float(b.get("height"))))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO / ".." / "shared" / "data")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads during detection (the detector's default is 1)")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes over the photos (best is kept)")
    ap.add_argument("--nms", default="reference", choices=["reference", "greedy"])
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--sections", default="1234", help="which of the four results to run (default all)")
    ap.add_argument("--no-malloc-tuning", action="store_true",
                    help="leave glibc malloc as it is (the detector tunes it, as get_detector() does)")
    args = ap.parse_args(argv)

    import torch

    from modeling.faces.detector import FaceDetector, tune_malloc_for_detection

    root = args.data.resolve()
    if not root.is_dir():
        print(f"no data at {root}", file=sys.stderr)
        return 2
    malloc_tuned = False if args.no_malloc_tuning else tune_malloc_for_detection()
    det = FaceDetector(nms=args.nms, num_threads=args.threads)
    detect = det.detect

    print("== machine")
    print(f"cpu: {cpu_model()}; cores visible: {os.cpu_count()}; torch {torch.__version__} "
          f"(detection runs with {det.num_threads} intra-op thread(s); torch default here {torch.get_num_threads()}); "
          f"python {platform.python_version()}")
    print(f"glibc malloc tuned for detection: {'yes' if malloc_tuned else 'no'}")
    try:
        print(f"load average at start: {os.getloadavg()}")
    except OSError:
        pass

    if "1" in args.sections:
        section_parity(root, detect, args)
    if "2" in args.sections:
        section_quality(root, detect, args)
    if "3" in args.sections:
        section_speed(root, det, args)
    if "4" in args.sections:
        section_noface(root, detect)
    try:
        print(f"\nload average at end: {os.getloadavg()}")
    except OSError:
        pass
    return 0


def section_parity(root, detect, args):
    print("\n== 1. parity with the original mtcnn 1.0.0 (IoU >= 0.7 one-to-one)")
    photos_ref = json.loads((root / "photos" / "mtcnn_reference.json").read_text())
    wild_ref = json.loads((root / "utkface" / "mtcnn_reference_wild300.json").read_text())
    results = [
        parity("photos (38)", photos_ref, root / "photos", detect),
        parity("utkface wild300", wild_ref, root / "utkface" / "wild", detect),
    ]
    tot_r = sum(r["reference_faces"] for r in results)
    tot_m = sum(r["matched"] for r in results)
    for r in results:
        print(f"{r['set']}: {r['images']} images, {r['matched']}/{r['reference_faces']} reference faces "
              f"matched ({100 * r['matched_share']:.1f}%), mean IoU {r['mean_iou']:.4f}, "
              f"landmark error {r['landmark_px']:.2f} px = {r['landmark_eye']:.4f} eye distances, "
              f"extra faces {r['extras']} ({r['extras_conf_ge_0.9']} with confidence >= 0.9)")
        if args.verbose or r["missed"]:
            for m in r["missed"]:
                print(f"   missed: {m}")
        if args.verbose or r["extra_list"]:
            for e in r["extra_list"]:
                print(f"   extra: {e}")
    print(f"overall: {tot_m}/{tot_r} = {100 * tot_m / tot_r:.1f}% matched")


def section_quality(root, detect, args):
    print("\n== 2. detection quality on the hand-drawn dlib boxes (IoU >= 0.5)")
    gt = read_dlib_boxes(root)
    tp = n_gt = n_det = 0
    for key, boxes in sorted(gt.items()):
        faces = detect(load_image(root / "photos" / key))
        m = match(boxes, [f.box for f in faces], 0.5)
        tp += len(m)
        n_gt += len(boxes)
        n_det += len(faces)
        if args.verbose:
            print(f"   {key}: gt {len(boxes)} det {len(faces)} tp {len(m)}")
    print(f"{len(gt)} images, {n_gt} hand-drawn faces, {n_det} detections: "
          f"recall {tp / n_gt:.3f} ({tp}/{n_gt}), precision {tp / n_det if n_det else float('nan'):.3f} "
          f"({tp}/{n_det})")


def section_speed(root, det, args):
    detect = det.detect
    photos_ref = json.loads((root / "photos" / "mtcnn_reference.json").read_text())
    print("\n== 3. speed on the photos (detect() per photo, image already decoded)")
    keys = sorted(photos_ref)
    images = [load_image(root / "photos" / k) for k in keys]
    mp = statistics.fmean(im.width * im.height for im in images) / 1e6
    detect(images[0])  # warm-up
    passes = []
    cpu_passes = []
    for _ in range(max(1, args.repeats)):
        t0, c0 = time.perf_counter(), time.process_time()
        for im in images:
            detect(im)
        passes.append((time.perf_counter() - t0) / len(images))
        cpu_passes.append((time.process_time() - c0) / len(images))
    best = min(passes)
    print(f"{len(images)} photos, mean {mp:.2f} MP: {best:.3f} s/photo wall (best of {len(passes)} passes: "
          f"{', '.join(f'{p:.3f}' for p in passes)}), CPU time {min(cpu_passes):.3f} s/photo; "
          f"original {ORIGINAL_S_PER_PHOTO} s/photo -> {ORIGINAL_S_PER_PHOTO / best:.1f}x faster")
    one = [im for im in images if 0.8e6 <= im.width * im.height <= 1.3e6]
    if one:
        ts = []
        for im in one:
            t0 = time.perf_counter()
            detect(im)
            ts.append(time.perf_counter() - t0)
        print(f"~1 MP photos ({len(one)}): median {statistics.median(ts):.3f} s/photo")
    t0 = time.perf_counter()
    det.detect_batch(images)
    print(f"detect_batch over all {len(images)} photos at once: {(time.perf_counter() - t0) / len(images):.3f} s/photo")


def section_noface(root, detect):
    print("\n== 4. no-face pictures")
    bad = 0
    for k in NO_FACE:
        faces = detect(load_image(root / "photos" / k))
        bad += bool(faces)
        print(f"{k}: {len(faces)} faces" + (f" {[round(f.confidence, 3) for f in faces]}" if faces else ""))
    print("all no-face pictures -> no face" if not bad else f"{bad} no-face pictures reported a face")


if __name__ == "__main__":
    raise SystemExit(main())
