"""Dataset reader, bad input, converter and split (modeling.data); no Django needed."""
from __future__ import annotations

import os
import sys
import types
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from modeling import data as D
from tests.modeling.modeling_fixture import make_appa, rewrite_avg


def test_reads_appa_layout_with_votes(tmp_path):
    root = make_appa(tmp_path / "ds")
    ds = D.read_dataset(root)
    assert [len(ds[s]) for s in D.SPLITS] == [16, 8, 8]
    s = ds["train"][0]
    assert s.face_path.endswith("000000.jpg_face.jpg") and os.path.isfile(s.face_path)
    assert 0 <= s.real_age <= 100 and s.apparent_age is not None and s.apparent_std is not None
    assert len(s.votes) == s.num_ratings and abs(np.mean(s.votes) - s.apparent_age) < 1e-2
    fp = D.fingerprint(root)
    assert len(fp) == 64 and fp == D.fingerprint(root)


def test_bad_entries_are_named_and_skippable(tmp_path):
    root = make_appa(tmp_path / "ds")
    os.remove(os.path.join(root, "train", "000001.jpg_face.jpg"))
    os.remove(os.path.join(root, "train", "000001.jpg"))

    def edit(rows):
        rows[2]["real_age"] = "130"
        rows[3]["apparent_age_avg"] = "-4"
        return rows

    rewrite_avg(root, "train", edit)
    with open(os.path.join(root, "train", "000004.jpg_face.jpg"), "wb") as fh:
        fh.write(b"not a jpeg")
    with pytest.raises(D.DatasetError) as e:
        D.read_split(root, "train", check_images=True)
    msg = str(e.value)
    assert "000001.jpg" in msg and "000002.jpg" in msg and "130" in msg and "000003.jpg" in msg
    assert "000004.jpg_face.jpg" in msg and "--skip-bad" in msg
    kept = D.read_split(root, "train", skip_bad=True, check_images=True)
    assert len(kept) == 12
    assert not {"000001.jpg", "000002.jpg", "000003.jpg", "000004.jpg"} & {s.file_name for s in kept}


def test_unreadable_image_reported_when_caching(tmp_path):
    root = make_appa(tmp_path / "ds")
    with open(os.path.join(root, "valid", "000002.jpg_face.jpg"), "wb") as fh:
        fh.write(b"junk")
    samples = D.read_split(root, "valid")
    with pytest.raises(D.DatasetError, match="000002.jpg_face.jpg"):
        D.tensor_cache(samples, 32, None)
    x, kept = D.tensor_cache(samples, 32, str(tmp_path / "cache"), skip_bad=True)
    assert x.shape == (7, 3, 32, 32) and x.dtype.is_floating_point is False and len(kept) == 7
    x2, kept2 = D.tensor_cache(samples, 32, str(tmp_path / "cache"), skip_bad=True)  # from the cache file
    assert (x2 == x).all() and [s.file_name for s in kept2] == [s.file_name for s in kept]


def test_missing_split_is_clear(tmp_path):
    root = make_appa(tmp_path / "ds")
    os.remove(os.path.join(root, "gt_avg_valid.csv"))
    with pytest.raises(D.DatasetError, match="split 'valid' is missing"):
        D.read_dataset(root)
    with pytest.raises(D.DatasetError, match="does not exist"):
        D.read_dataset(str(tmp_path / "nowhere"))


def test_missing_crops_are_made_with_modeling_faces(tmp_path, monkeypatch):
    root = make_appa(tmp_path / "ds")
    for n in ("000000", "000003"):
        os.remove(os.path.join(root, "test", f"{n}.jpg_face.jpg"))
    calls = []
    fake = types.ModuleType("modeling.faces")
    fake.detect = lambda im: calls.append(im.size) or ["face"]
    fake.largest_face = lambda faces: faces[0] if faces else None
    fake.face_crop = lambda im, face, margin=0.4, size=224: im.resize((size, size))
    monkeypatch.setitem(sys.modules, "modeling.faces", fake)
    samples = D.read_split(root, "test", crop_cache=str(tmp_path / "crops"))
    assert len(samples) == 8 and len(calls) == 2
    made = [s for s in samples if s.face_path.startswith(str(tmp_path / "crops"))]
    assert len(made) == 2 and all(Image.open(s.face_path).size == (224, 224) for s in made)
    # no face found -> named, skippable
    fake.detect = lambda im: []
    os.remove(os.path.join(root, "test", "000005.jpg_face.jpg"))
    with pytest.raises(D.DatasetError, match="000005.jpg: no face found"):
        D.read_split(root, "test", crop_cache=str(tmp_path / "crops2"))
    assert len(D.read_split(root, "test", crop_cache=str(tmp_path / "crops2"), skip_bad=True)) == 5


def test_age_from_name():
    assert D.age_from_name("26_1_0_20170116171048821.jpg.chip.jpg") == 26
    assert D.age_from_name("1_0_2_20161219140530307.jpg.chip.jpg") == 1
    assert D.age_from_name("078A11.JPG") == 11
    assert D.age_from_name("002A05a.JPG") == 5
    assert D.age_from_name("README.txt") is None


def test_stratified_split_is_seeded_and_proportional():
    rng = np.random.default_rng(1)
    ages = list(rng.integers(1, 90, size=3000))
    a = D.stratified_split(ages, seed=3)
    assert a == D.stratified_split(ages, seed=3) and a != D.stratified_split(ages, seed=4)
    c = Counter(a)
    total = sum(D.APPA_PROPORTIONS)
    for split, p in zip(D.SPLITS, D.APPA_PROPORTIONS):
        assert abs(c[split] - 3000 * p / total) <= 2
    # every 5-year bin is spread over the splits in about the same proportion
    ages = np.array(ages)
    for b in range(0, 90, 5):
        m = (ages >= b) & (ages < b + 5)
        share = np.mean([a[i] == "train" for i in np.flatnonzero(m)])
        assert abs(share - D.APPA_PROPORTIONS[0] / total) < 0.05


def test_convert_named_folder(tmp_path):
    src = tmp_path / "utk"
    src.mkdir()
    names = [f"{age}_{age % 2}_0_2017011{age % 10}000000000.jpg.chip.jpg" for age in range(1, 60)]
    names += ["110_0_0_20170110000000000.jpg.chip.jpg", "notes.txt", "012A34.JPG"]
    for n in names:
        Image.new("RGB", (40, 40), (len(n) * 3 % 255, 80, 120)).save(src / n, format="JPEG")
    summary = D.convert_named_folder(str(src), str(tmp_path / "out"), seed=0)
    assert summary["skipped_over_max_age"] == 1 and summary["skipped_no_age_in_name"] == 1
    assert sum(summary["counts"].values()) == 60
    ds = D.read_dataset(str(tmp_path / "out"))
    assert sum(len(v) for v in ds.values()) == 60
    ages = sorted(s.real_age for v in ds.values() for s in v)
    assert 34 in ages and 110 not in ages
    assert all(s.apparent_age is None for v in ds.values() for s in v)
    assert os.path.islink(ds["train"][0].face_path)
    # another split into the same folder: the given proportions, and no stale links of the old one
    again = D.convert_named_folder(str(src), str(tmp_path / "out"), seed=0, proportions=(75, 10, 15))
    assert again["counts"] == {"train": 45, "valid": 6, "test": 9} and again["proportions"] == [75, 10, 15]
    ds = D.read_dataset(str(tmp_path / "out"))
    on_disk = sum(len(os.listdir(tmp_path / "out" / s)) for s in D.SPLITS)
    assert on_disk == 2 * 60 and sum(len(v) for v in ds.values()) == 60
    with pytest.raises(ValueError):
        D.convert_named_folder(str(src), str(tmp_path / "bad"), proportions=(1, 1))
