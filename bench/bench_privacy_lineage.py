"""Lineage storage: how an export records the ids of the photos it held (docs/privacy.md).

    .venv/bin/python bench/bench_privacy_lineage.py [--exports 100] [--pg postgres://postgres@127.0.0.1:5432/postgres]

For exports of 1k, 10k and 100k photos at three densities of the id space (consecutive ids; 70% of
a range, the usual case once some photos are hidden or deleted; 1% of a range, a staff selection),
prints the stored bytes of: delta varints deflated (what privacy.codec stores), delta varints alone,
a deflated bitmap, and a through table (export_id, photo_id) with its primary key in PostgreSQL
(measured with pg_total_relation_size, when --pg reaches a server). Then the time to decode one
100k-photo lineage and to answer "which of these 50 photos were in which of N exports" the way
privacy.selectors.exports_holding does (decode every export, np.isin).
"""
import argparse
import sys
import time
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.machine import cpu_model  # noqa: E402
from privacy.codec import _varints, decode_ids, encode_ids  # noqa: E402


def id_sets(rng):
    for n in (1_000, 10_000, 100_000):
        yield n, "consecutive", np.arange(1, n + 1)
        yield n, "70% of a range", np.sort(rng.choice(np.arange(1, int(n / 0.7) + 1), n, replace=False))
        yield n, "1% of a range", np.sort(rng.choice(np.arange(1, n * 100 + 1), n, replace=False))


def bitmap_size(ids: np.ndarray) -> int:
    bits = np.zeros(int(ids.max()) + 1, dtype=bool)
    bits[ids] = True
    return len(zlib.compress(np.packbits(bits).tobytes(), 6))


def through_table_size(dsn: str, ids: np.ndarray) -> int | None:
    try:
        import psycopg
    except ImportError:
        return None
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=3) as conn:
            conn.execute("DROP TABLE IF EXISTS bench_lineage")
            conn.execute("CREATE TABLE bench_lineage (export_id integer, photo_id bigint, PRIMARY KEY (export_id, photo_id))")
            with conn.cursor().copy("COPY bench_lineage (export_id, photo_id) FROM STDIN") as copy:
                for pk in ids.tolist():
                    copy.write_row((1, pk))
            conn.execute("VACUUM ANALYZE bench_lineage")
            size = conn.execute("SELECT pg_total_relation_size('bench_lineage')").fetchone()[0]
            conn.execute("DROP TABLE bench_lineage")
            return size
    except Exception as exc:  # noqa: BLE001 - no server: the column says so
        print(f"(no PostgreSQL at {dsn}: {exc})", file=sys.stderr)
        return None


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--exports", type=int, default=100)
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"machine: {cpu_model()}, numpy {np.__version__}")
    print("| photos | ids | varint+deflate (stored) | varint | bitmap+deflate | through table (PostgreSQL) |")
    print("|---:|---|---:|---:|---:|---:|")
    big = None
    for n, label, ids in id_sets(rng):
        stored = len(encode_ids(ids))
        raw = len(_varints(np.diff(ids, prepend=0).astype(np.uint64)))
        table = through_table_size(args.pg, ids)
        print(f"| {n:,} | {label} | {stored:,} B | {raw:,} B | {bitmap_size(ids):,} B | "
              f"{'n/a' if table is None else f'{table:,} B'} |")
        if n == 100_000 and label == "70% of a range":
            big = ids
    data = encode_ids(big)
    runs = 20
    start = time.perf_counter()
    for _ in range(runs):
        decode_ids(data)
    decode_ms = (time.perf_counter() - start) / runs * 1000
    start = time.perf_counter()
    encode_ids(big)
    encode_ms = (time.perf_counter() - start) * 1000
    blobs = [encode_ids(np.sort(rng.choice(np.arange(1, 150_000), 100_000, replace=False))) for _ in range(args.exports)]
    wanted = rng.choice(np.arange(1, 150_000), 50, replace=False)
    start = time.perf_counter()
    for blob in blobs:
        wanted[np.isin(wanted, decode_ids(blob))]
    lookup_ms = (time.perf_counter() - start) * 1000
    print(f"\nencode 100k ids: {encode_ms:.1f} ms; decode: {decode_ms:.2f} ms (mean of {runs})")
    print(f"50 photos against {args.exports} exports of 100k photos each: {lookup_ms:.0f} ms")


if __name__ == "__main__":
    main()
