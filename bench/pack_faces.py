"""Pack a folder of face crops (UTKFace aligned, ages in the file names) into one small tar.gz of
WebP files with the same names, for carrying to a GPU machine whose upload is size-limited
(bench/gpu.sh --pack).  Same names -> modeling.data.convert_named_folder makes the same seeded
split from the pack as from the original folder; Pillow reads WebP by content whatever the name.

    python bench/pack_faces.py SRC OUT.tar.gz [--size 144] [--quality 75]
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import tarfile
from concurrent.futures import ProcessPoolExecutor

from PIL import Image


def encode(args):
    path, size, quality = args
    with Image.open(path) as im:
        im = im.convert("RGB").resize((size, size), Image.BICUBIC)
        buf = io.BytesIO()
        im.save(buf, "WEBP", quality=quality, method=6)
    return buf.getvalue()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--size", type=int, default=144)
    ap.add_argument("--quality", type=int, default=75)
    args = ap.parse_args(argv)
    if not os.path.isdir(args.src):
        print(f"error: {args.src} is not a folder", file=sys.stderr)
        return 2
    names = sorted(n for n in os.listdir(args.src) if not n.startswith("."))
    jobs = [(os.path.join(args.src, n), args.size, args.quality) for n in names]
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        def tqdm(it, **_):
            return it
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    with tarfile.open(tmp, "w:gz") as tar, ProcessPoolExecutor() as pool:
        for name, data in tqdm(zip(names, pool.map(encode, jobs, chunksize=64)), total=len(names),
                               desc=f"WebP {args.size}px q{args.quality}", mininterval=5):
            info = tarfile.TarInfo(f"faces/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    os.replace(tmp, args.out)
    print(f"{len(names)} faces -> {args.out} ({os.path.getsize(args.out) / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
