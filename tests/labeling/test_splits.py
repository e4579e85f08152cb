"""Split assignment: APPA-REAL proportions per age band, deterministic, never moves a photo."""
import random

from labeling.splits import PROPORTIONS, SPLITS, age_band, assign_splits, split_counts


def test_proportions_follow_appa_real_per_band():
    rng = random.Random(1)
    photos = [(i, rng.randint(0, 100)) for i in range(1, 7592)]
    result = assign_splits(photos)
    assert set(result.values()) == set(SPLITS)
    total = {s: sum(1 for v in result.values() if v == s) for s in SPLITS}
    weight = sum(PROPORTIONS.values())
    for s in SPLITS:
        assert abs(total[s] - len(photos) * PROPORTIONS[s] / weight) <= 21  # at most one per band off
    ages = dict(photos)
    for band in {age_band(a) for _, a in photos}:
        members = [pk for pk in result if age_band(ages[pk]) == band]
        for s in SPLITS:
            expected = len(members) * PROPORTIONS[s] / weight
            assert abs(sum(1 for pk in members if result[pk] == s) - expected) < 1.0


def test_deterministic_and_independent_of_input_order():
    photos = [(i, (i * 7) % 90) for i in range(1, 500)]
    shuffled = photos[:]
    random.Random(3).shuffle(shuffled)
    assert assign_splits(photos) == assign_splits(shuffled)


def test_incremental_assignment_keeps_existing_and_balances_new():
    first = assign_splits([(i, 30) for i in range(1, 101)])
    existing = split_counts((30, s) for s in first.values())
    second = assign_splits([(i, 30) for i in range(101, 201)], existing)
    assert set(second).isdisjoint(first)  # only new photos are assigned
    combined = list(first.values()) + list(second.values())
    weight = sum(PROPORTIONS.values())
    for s in SPLITS:
        assert abs(combined.count(s) - 200 * PROPORTIONS[s] / weight) < 1.0


def test_small_inputs_and_out_of_range_ages():
    assert assign_splits([]) == {}
    assert assign_splits([(5, 30)]) == {5: "train"}
    assert age_band(116) == age_band(100) and age_band(-3) == 0
