"""Sets of photo ids as bytes: the lineage an export keeps of the photos it contained.

Pure Python + numpy, no Django. The ids are sorted, stored as the differences between neighbours
(the first one as itself), each difference as a LEB128 varint (7 bits per byte, high bit = more
bytes follow), and the result deflated with zlib. An export holds ids that are close together,
so most differences take one byte before deflate, and deflate squeezes the runs of small ones;
bench/bench_privacy_lineage.py measures the sizes and speeds against a bitmap and a through table
(docs/privacy.md, "Lineage").

Format: one version byte (1), then zlib(varints). The empty set is b"".
"""
from __future__ import annotations

import zlib
from collections.abc import Iterable

import numpy as np

VERSION = 1


class CorruptIds(ValueError):
    pass


def encode_ids(ids: Iterable[int]) -> bytes:
    values = np.unique(np.fromiter((int(i) for i in ids), dtype=np.int64))
    if values.size == 0:
        return b""
    if values[0] < 0:
        raise ValueError("photo ids are never negative")
    deltas = np.diff(values, prepend=0).astype(np.uint64)
    return bytes([VERSION]) + zlib.compress(_varints(deltas), 6)


def _varints(values: np.ndarray) -> bytes:
    """LEB128 of each value, vectorised: one pass per 7-bit group of the widest value."""
    n_bytes = np.ones(values.size, dtype=np.int64)
    rest = values >> np.uint64(7)
    while rest.any():
        n_bytes += rest > 0
        rest >>= np.uint64(7)
    out = np.empty(int(n_bytes.sum()), dtype=np.uint8)
    starts = np.concatenate(([0], np.cumsum(n_bytes)[:-1]))
    remaining = values.copy()
    for k in range(int(n_bytes.max())):
        alive = n_bytes > k
        group = (remaining[alive] & np.uint64(0x7F)).astype(np.uint8)
        more = (n_bytes[alive] > k + 1).astype(np.uint8) << 7
        out[starts[alive] + k] = group | more
        remaining[alive] >>= np.uint64(7)
    return out.tobytes()


def decode_ids(data: bytes | memoryview | None) -> np.ndarray:
    """The sorted ids (int64 array) of `encode_ids` output."""
    if not data:
        return np.empty(0, dtype=np.int64)
    data = bytes(data)
    if data[0] != VERSION:
        raise CorruptIds(f"unknown lineage format {data[0]}")
    try:
        raw = np.frombuffer(zlib.decompress(data[1:]), dtype=np.uint8)
    except zlib.error as exc:
        raise CorruptIds(f"lineage does not inflate: {exc}") from None
    if raw.size == 0 or raw[-1] & 0x80:
        raise CorruptIds("lineage ends inside a number")
    ends = np.flatnonzero((raw & 0x80) == 0)
    starts = np.concatenate(([0], ends[:-1] + 1))
    position = np.arange(raw.size) - np.repeat(starts, ends - starts + 1)
    if position.max() > 9:
        raise CorruptIds("a number in the lineage is longer than 64 bits")
    parts = (raw & 0x7F).astype(np.uint64) << (7 * position).astype(np.uint64)
    deltas = np.add.reduceat(parts, starts)
    return np.cumsum(deltas.astype(np.int64))


def contains(data: bytes | memoryview | None, ids: Iterable[int]) -> set[int]:
    """Which of `ids` the encoded set holds."""
    wanted = np.fromiter((int(i) for i in ids), dtype=np.int64)
    if wanted.size == 0 or not data:
        return set()
    held = decode_ids(data)
    return {int(i) for i in wanted[np.isin(wanted, held, assume_unique=False)]}
