"""The lineage codec: sorted photo ids <-> bytes (pure, no Django)."""
import zlib

import numpy as np
import pytest

from privacy.codec import CorruptIds, contains, decode_ids, encode_ids


@pytest.mark.parametrize("ids", [[], [0], [7], [1, 2, 3], [5, 3, 5, 1], [127, 128, 16383, 16384, 2**40, 2**62]])
def test_round_trip(ids):
    assert decode_ids(encode_ids(ids)).tolist() == sorted(set(ids))


def test_random_sets_round_trip():
    rng = np.random.default_rng(1)
    for size, high in ((10, 20), (1000, 10**6), (50_000, 60_000)):
        ids = rng.integers(1, high, size)
        assert decode_ids(encode_ids(ids.tolist())).tolist() == sorted(set(ids.tolist()))


def test_dense_ranges_are_tiny():
    assert len(encode_ids(range(1, 100_001))) < 200


def test_empty_is_empty_bytes():
    assert encode_ids([]) == b"" and decode_ids(b"").size == 0 and decode_ids(None).size == 0


def test_contains():
    data = encode_ids([3, 10, 200])
    assert contains(data, [1, 3, 200, 201]) == {3, 200}
    assert contains(b"", [3]) == set() and contains(data, []) == set()


def test_negative_ids_refused():
    with pytest.raises(ValueError):
        encode_ids([-1, 2])


@pytest.mark.parametrize("data", [b"\x02abc", b"\x01not zlib", bytes([1]) + zlib.compress(b"\x80"),
                                  bytes([1]) + zlib.compress(b""), bytes([1]) + zlib.compress(b"\xff" * 11 + b"\x01")])
def test_corrupt_input_is_refused(data):
    with pytest.raises(CorruptIds):
        decode_ids(data)


def test_memoryview_accepted():
    assert decode_ids(memoryview(encode_ids([4, 9]))).tolist() == [4, 9]
