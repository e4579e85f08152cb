"""Command line: detect faces and write APPA-REAL style crops plus a JSON of the detections.

    python -m modeling.faces IMAGE_OR_DIR... --out DIR [--all-faces] [--rotations]
           [--margin 0.4] [--size 224] [--min-face-size 20] [--device cpu] [--threads N]

For every image ``NAME`` (folders are walked recursively, their structure kept under ``--out``)
it writes ``NAME_face.jpg``, the aligned crop of the largest face (the APPA-REAL
``X.jpg_face.jpg`` convention), or with ``--all-faces`` one ``NAME_face<i>.jpg`` per face (most
confident first), and ``DIR/detections.json``:
``{NAME: {"width", "height", "faces": [Face.to_dict()...], "crops": [...], "error"?}}``.
EXIF orientation is applied before detection, so coordinates refer to the upright image.
Exit status: 0 when every image could be read (with or without faces), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def iter_inputs(paths: list[Path]) -> list[tuple[Path, str]]:
    """(file, name under --out) for every image given or found in the given folders."""
    out: list[tuple[Path, str]] = []
    for p in paths:
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and "_face" not in f.stem:
                    out.append((f, f.relative_to(p).as_posix()))
        elif p.is_file():
            out.append((p, p.name))
        else:
            print(f"warning: {p} does not exist", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m modeling.faces", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="+", type=Path, help="image files and/or folders")
    ap.add_argument("--out", type=Path, required=True, help="output folder")
    ap.add_argument("--all-faces", action="store_true", help="write a crop for every face, not just the largest")
    ap.add_argument("--rotations", action="store_true", help="retry at 90/180/270 degrees when no face is found")
    ap.add_argument("--margin", type=float, default=0.4)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--min-face-size", type=int, default=20)
    ap.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default cpu)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch intra-op threads during detection (default 1, or $APPAREAL_FACE_THREADS)")
    ap.add_argument("--quality", type=int, default=95, help="JPEG quality of the crops")
    args = ap.parse_args(argv)

    from PIL import Image, ImageOps
    from tqdm import tqdm

    from . import face_crop, get_detector, largest_face

    items = iter_inputs(args.inputs)
    if not items:
        print("no images found", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    if args.threads:
        from .detector import FaceDetector

        detector = FaceDetector(args.device, num_threads=args.threads)
    else:
        detector = get_detector(args.device)
    report: dict[str, dict] = {}
    failures = 0
    show_bar = len(items) > 1 or any(p.is_dir() for p in args.inputs)
    for path, name in tqdm(items, desc="faces", unit="img", disable=not show_bar):
        entry: dict = {"faces": [], "crops": []}
        try:
            with Image.open(path) as im:
                im.load()
                image = ImageOps.exif_transpose(im)
            entry["width"], entry["height"] = image.width, image.height
            faces = detector.detect(image, min_face_size=args.min_face_size, try_rotations=args.rotations)
            entry["faces"] = [f.to_dict() for f in faces]
            chosen = list(enumerate(faces)) if args.all_faces else (
                [(0, largest_face(faces))] if faces else [])
            for i, face in chosen:
                crop_name = f"{name}_face{i}.jpg" if args.all_faces else f"{name}_face.jpg"
                dest = args.out / crop_name
                dest.parent.mkdir(parents=True, exist_ok=True)
                face_crop(image, face, margin=args.margin, size=args.size).save(dest, quality=args.quality)
                entry["crops"].append(crop_name)
        except Exception as exc:  # unreadable file: report it, go on with the others
            entry["error"] = f"{type(exc).__name__}: {exc}"
            failures += 1
        report[name] = entry
    (args.out / "detections.json").write_text(json.dumps(report, indent=1))
    n_faces = sum(len(e["faces"]) for e in report.values())
    print(f"{len(items)} images, {n_faces} faces, {failures} unreadable -> {args.out}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
