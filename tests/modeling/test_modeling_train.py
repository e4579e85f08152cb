"""Train a few steps on the tiny fixture, save, load, predict, evaluate (Tables II/III), SVR,
sensitivity maps, resume, budget, stop; model-file safety.  Small backbone at 32 px: seconds."""
from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from modeling import evaluate as E
from modeling import svr as S
from modeling.modelfile import ModelFileError, load_model_file, save_model_file
from modeling.predictor import AgePredictor, resolve_device
from modeling.sensitivity import difference_image, sensitivity_image, sensitivity_map
from modeling.train import TrainConfig, TrainingError, label_distributions, train
from modeling.train import main as train_main
from tests.modeling.modeling_fixture import SMALL, face_files, make_appa


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("modeling_core")
    data = make_appa(base / "data")
    cache = str(base / ".cache")
    common = dict(SMALL, cache_dir=cache)
    events = []
    app = train(TrainConfig(data=data, out=str(base / "apparent_dex"), target="apparent", soft_labels=True,
                            label_sigma=1.0, **common), on_progress=events.append)
    real = train(TrainConfig(data=data, out=str(base / "real_dex"), target="real", **common))
    res = train(TrainConfig(data=data, out=str(base / "real_res"), target="real", residual_of=real.model_path,
                            **common))
    app_res = train(TrainConfig(data=data, out=str(base / "app_res"), target="real",
                                residual_of=app.model_path, **common))
    l1 = train(TrainConfig(data=data, out=str(base / "real_l1"), target="real", head="l1", **common))
    svr = S.fit_svr_file(app.model_path, data, str(base / "svr" / "model.pt"), cache_dir=cache,
                         c_grid=(1.0, 10.0), gamma_grid=(1.0,))
    return dict(base=base, data=data, cache=cache, events=events, apparent=app, real=real, residual=res,
                app_res=app_res, l1=l1, svr=svr)


def faces(n=3):
    return [Image.open(p).convert("RGB") for p in face_files()[:n]]


def test_training_writes_model_metrics_and_checkpoint(trained):
    r = trained["apparent"]
    out = os.path.dirname(r.model_path)
    assert r.status == "finished" and r.epochs_run == 2 and os.path.isfile(r.model_path)
    assert os.path.isfile(os.path.join(out, "checkpoint.pt"))
    lines = [json.loads(x) for x in open(os.path.join(out, "metrics.jsonl"))]
    assert [x["event"] for x in lines][0] == "start" and lines[-1]["event"] == "done"
    assert sum(x["event"] == "epoch" for x in lines) == 2
    assert {"valid_apparent_mae", "test_apparent_mae", "test_apparent_cs5"} <= set(r.metrics)
    assert any(e["event"] == "epoch" for e in trained["events"])
    blob = load_model_file(r.model_path)
    meta = blob["metadata"]
    assert blob["config"]["head"] == "dex" and blob["config"]["target"] == "apparent"
    assert meta["split_sizes"] == {"train": 16, "valid": 8, "test": 8}
    assert len(meta["dataset_fingerprint"]) == 64 and meta["device"] == "cpu" and meta["train_seconds"] > 0


def test_predictor_chain_and_outputs(trained):
    imgs = faces(3)
    p = AgePredictor.load(trained["apparent"].model_path)
    out = p.predict(imgs)
    assert len(out) == 3 and p.name == "Apparent DEX"
    assert out[0]["apparent_age"] is not None and out[0]["real_age"] is None
    d = np.array(out[0]["distribution"])
    assert d.shape == (101,) and abs(d.sum() - 1) < 1e-4
    assert abs((d * np.arange(101)).sum() - out[0]["apparent_age"]) < 0.5  # flip TTA averages two
    # batching does not change results
    one = [p.predict([im])[0]["apparent_age"] for im in imgs]
    assert np.allclose(one, [o["apparent_age"] for o in out], atol=1e-3)

    r = AgePredictor.load(trained["residual"].model_path)
    assert r.name == "Real + Residual DEX" and r.target == "real"
    base = AgePredictor.load(trained["real"].model_path).predict(imgs)
    chained = r.predict(imgs)
    assert all(c["real_age"] is not None for c in chained)
    assert all(abs(c["real_age"] - b["real_age"]) <= 50 for c, b in zip(chained, base))

    a = AgePredictor.load(trained["app_res"].model_path)
    assert a.name == "Apparent + Residual DEX"
    o = a.predict(imgs)[0]
    assert o["apparent_age"] is not None and o["real_age"] is not None

    s = AgePredictor.load(trained["svr"])
    assert s.name == "Apparent DEX + SVR"
    o = s.predict(imgs)[0]
    assert o["apparent_age"] is not None and o["real_age"] is not None and o["target"] == "real"

    l1 = AgePredictor.load(trained["l1"].model_path)
    assert l1.name == "Real L1 regression" and l1.predict(imgs)[0]["distribution"] is None
    assert AgePredictor.load(trained["real"].model_path).predict([]) == []


def test_paper_tables(trained, tmp_path):
    t = trained
    models = {"Apparent DEX": t["apparent"].model_path, "Real DEX": t["real"].model_path,
              "Real + Residual DEX": t["residual"].model_path, "Apparent DEX + SVR": t["svr"],
              "Apparent + Residual DEX": t["app_res"].model_path, "Real L1 regression": t["l1"].model_path}
    res = E.paper_tables(t["data"], models, cache_dir=t["cache"])
    t2 = [r["method"] for r in res["table2"]]
    t3 = [r["method"] for r in res["table3"]]
    assert t2[:4] == ["Real GT", "Apparent DEX", "Real DEX", "Real + Residual DEX"]
    assert "Apparent DEX + SVR" not in t2 and "Apparent + Residual DEX" not in t2
    assert t3[:6] == ["Apparent GT", "Real DEX", "Real + Residual DEX", "Apparent DEX",
                      "Apparent DEX + SVR", "Apparent + Residual DEX"]
    assert res["n_test"] == 8
    row = res["table2"][1]
    assert row["mae"] > 0 and 0 <= row["epsilon"] <= 1 and 0 <= row["cs5"] <= 1 and row["paper"] == 4.082
    assert res["table3"][0]["epsilon"] is None
    assert "Table II" in res["markdown"] and "| Real GT |" in res["markdown"]
    # the CLI writes markdown + JSON, names rows itself
    rc = E.main(["--data", t["data"], "--models", t["real"].model_path, f"Mine={t['l1'].model_path}",
                 "--out", str(tmp_path / "ev")])
    assert rc == 0
    j = json.loads((tmp_path / "ev" / "tables.json").read_text())
    assert [r["method"] for r in j["table3"]] == ["Apparent GT", "Real DEX", "Mine"]
    assert (tmp_path / "ev" / "tables.md").read_text().startswith("**Table II")


def test_real_only_dataset_gets_real_rows(tmp_path, trained):
    data = make_appa(tmp_path / "real_only", apparent=False)
    res = E.paper_tables(data, [trained["real"].model_path])
    assert res["table2"] == [] and [r["method"] for r in res["table3"]] == ["Real DEX"]
    assert "no apparent age labels" in res["markdown"]


def test_metrics():
    m = E.metrics([10, 20, 30], [12, 20, 40], std=[2, 1, 5])
    assert m["mae"] == pytest.approx(4.0) and m["cs5"] == pytest.approx(2 / 3)
    expected = np.mean([1 - np.exp(-4 / 8), 0, 1 - np.exp(-100 / 50)])
    assert m["epsilon"] == pytest.approx(expected)


def test_svr_learns_a_mapping():
    rng = np.random.default_rng(0)
    a = rng.uniform(5, 80, 400)
    real = a + 0.1 * (a - 40) + rng.normal(0, 1, 400)
    m, info = S.fit(a[:300], real[:300], a[300:], real[300:], c_grid=(10.0, 100.0), gamma_grid=(1.0, 3.0))
    assert info["valid_real_mae"] < info["identity_valid_mae"]


def test_sensitivity_maps(trained):
    im = faces(1)[0]
    m = sensitivity_map(trained["residual"].model_path, im, size=64)
    assert m.shape == (64, 64) and m.min() >= 0 and abs(m.max() - 1) < 1e-5
    pic = sensitivity_image(trained["real"].model_path, im, size=64)
    assert isinstance(pic, Image.Image) and pic.size == (64, 64) and pic.mode == "RGB"
    diff = difference_image(trained["real"].model_path, trained["apparent"].model_path, im, size=64)
    assert diff.size == (64, 64)


def test_label_distributions():
    d = label_distributions(np.array([30.25, 0.0, 100.0]), 0, 100, 0.0)
    assert torch.allclose(d.sum(1), torch.ones(3))
    assert float((d[0] * torch.arange(101)).sum()) == pytest.approx(30.25)
    g = label_distributions(np.array([50.0]), 0, 100, 2.0)
    assert int(g[0].argmax()) == 50 and float(g[0, 48]) > 0
    v = label_distributions(np.array([20.0]), 0, 100, 0.0, votes=[[18, 22, 22]])
    assert float(v[0, 22]) == pytest.approx(2 / 3) and float(v[0, 18]) == pytest.approx(1 / 3)
    r = label_distributions(np.array([-3.5]), -50, 50, 0.0)
    assert float((r[0] * torch.arange(-50, 51)).sum()) == pytest.approx(-3.5)


def test_resume_budget_stop_and_frozen_features(tmp_path):
    data = make_appa(tmp_path / "data", counts=(12, 6, 6))
    common = dict(SMALL, cache_dir=str(tmp_path / ".cache"), eval_test=False)
    common.pop("epochs")
    out = str(tmp_path / "run")
    train(TrainConfig(data=data, out=out, epochs=1, **common))
    r = train(TrainConfig(data=data, out=out, epochs=2, **common))  # continues from epoch 1
    lines = [json.loads(x) for x in open(os.path.join(out, "metrics.jsonl"))]
    assert [x["epoch"] for x in lines if x["event"] == "epoch"] == [1, 2] and r.epochs_run == 2
    with pytest.raises(TrainingError, match="different configuration"):
        train(TrainConfig(data=data, out=out, epochs=2, resume="yes", **dict(common, lr=1e-2)))
    # budget: nothing fits into 0.001 minutes, still a model file
    b = train(TrainConfig(data=data, out=str(tmp_path / "budget"), epochs=2, max_minutes=0.001, **common))
    assert b.status == "budget" and os.path.isfile(b.model_path)
    # cooperative stop
    s = train(TrainConfig(data=data, out=str(tmp_path / "stop"), epochs=2, **common), should_stop=lambda: True)
    assert s.status == "stopped" and s.model_path == ""
    # frozen early stages with precomputed features
    f = train(TrainConfig(data=data, out=str(tmp_path / "frozen"), epochs=2, freeze_blocks=2, feature_views=3,
                          **common))
    assert f.status == "finished"
    p = AgePredictor.load(f.model_path)
    assert p.predict(faces(1))[0]["real_age"] is not None


def test_weight_average(tmp_path):
    from modeling.train.engine import Ema

    lin = torch.nn.Linear(2, 1)
    with torch.no_grad():
        lin.weight.fill_(0.0)
    ema = Ema(lin, 0.5)
    with torch.no_grad():
        lin.weight.fill_(2.0)
    ema.update(lin, step=100)  # decay min(0.5, 101/110) = 0.5
    assert torch.allclose(ema.shadow["weight"], torch.ones(1, 2))
    with ema.swapped_in(lin):
        assert torch.allclose(lin.weight, torch.ones(1, 2))
    assert torch.allclose(lin.weight, torch.full((1, 2), 2.0))  # raw weights back after evaluation

    # a run with the average: resumes with it, and the model file holds averaged (not raw) weights
    data = make_appa(tmp_path / "data", counts=(12, 6, 6))
    common = dict(SMALL, cache_dir=str(tmp_path / ".cache"), eval_test=False, ema_decay=0.9)
    common.pop("epochs")
    out = str(tmp_path / "ema")
    train(TrainConfig(data=data, out=out, epochs=1, **common))
    r = train(TrainConfig(data=data, out=out, epochs=2, log_raw_valid=True, **common))
    assert r.status == "finished" and r.epochs_run == 2
    epochs = [json.loads(x) for x in open(os.path.join(out, "metrics.jsonl"))]
    assert "valid_mae_raw" in [e for e in epochs if e["event"] == "epoch"][-1]
    ckpt = torch.load(os.path.join(out, "checkpoint.pt"), weights_only=True)
    assert ckpt["ema"] is not None and ckpt["epoch"] == 2
    saved = load_model_file(r.model_path)["tensors"]
    best = ckpt["best_state"]
    assert all(torch.equal(saved[f"model.{k}"], v) for k, v in best.items())
    k = "head.weight"
    assert torch.allclose(best[k], ckpt["ema"][k]) or ckpt["best_epoch"] == 1
    assert not torch.equal(ckpt["ema"][k], ckpt["model"][k])


def test_cli_train_and_bad_data(tmp_path, capsys):
    data = make_appa(tmp_path / "data", counts=(8, 4, 4))
    rc = train_main(["--data", data, "--out", str(tmp_path / "cli"), "--backbone", "small", "--pretrained", "none",
                     "--image-size", "32", "--epochs", "1", "--batch-size", "4", "--threads", "1", "--no-progress",
                     "--cache-dir", str(tmp_path / ".c")])
    assert rc == 0 and os.path.isfile(tmp_path / "cli" / "model.pt")
    os.remove(os.path.join(data, "gt_avg_test.csv"))
    os.remove(os.path.join(data, "train", "000002.jpg_face.jpg"))
    os.remove(os.path.join(data, "train", "000002.jpg"))
    rc = train_main(["--data", data, "--out", str(tmp_path / "cli2"), "--backbone", "small", "--pretrained", "none",
                     "--image-size", "32", "--epochs", "1", "--no-progress"])
    assert rc == 2 and "000002.jpg" in capsys.readouterr().err


def test_no_gpu_falls_back_to_cpu(monkeypatch, caplog):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with caplog.at_level("WARNING", logger="modeling.predictor"):
        assert resolve_device("cuda").type == "cpu"
    assert "falling back to CPU" in caplog.text
    assert resolve_device("auto").type == "cpu"


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/appareal_pwned_marker",))


def test_model_file_safety(trained, tmp_path):
    good = trained["real"].model_path
    # a pickle with code in it: refused, not executed
    evil = tmp_path / "evil.pt"
    torch.save({"format": "appareal-age-model", "x": _Evil()}, evil)
    if os.path.exists("/tmp/appareal_pwned_marker"):
        os.remove("/tmp/appareal_pwned_marker")
    with pytest.raises(ModelFileError, match="refused"):
        AgePredictor.load(str(evil))
    assert not os.path.exists("/tmp/appareal_pwned_marker")
    # plain pickle (not a torch zip)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ModelFileError):
        AgePredictor.load(str(junk))
    # a bare state dict (someone else's checkpoint)
    bare = tmp_path / "bare.pt"
    torch.save({"conv.weight": torch.zeros(2, 2)}, bare)
    with pytest.raises(ModelFileError, match="bare state dict"):
        AgePredictor.load(str(bare))
    # weights changed after saving
    blob = load_model_file(good)
    k = next(iter(blob["tensors"]))
    blob["tensors"][k] = blob["tensors"][k] + 1
    tampered = tmp_path / "tampered.pt"
    torch.save(blob, tampered)
    with pytest.raises(ModelFileError, match="checksum"):
        AgePredictor.load(str(tampered))
    # another architecture recorded with valid checksums
    blob = load_model_file(good)
    cfg = dict(blob["config"], head="l1")
    other = save_model_file(str(tmp_path / "other.pt"), kind="net", config=cfg, metadata={}, tensors=blob["tensors"])
    with pytest.raises(ModelFileError, match="do not fit"):
        AgePredictor.load(other)
    # truncated file
    cut = tmp_path / "cut.pt"
    cut.write_bytes(open(good, "rb").read()[:1000])
    with pytest.raises(ModelFileError):
        AgePredictor.load(str(cut))
    # a residual whose parent changed
    import shutil
    d = tmp_path / "chain"
    d.mkdir()
    shutil.copy(trained["real"].model_path, d / "parent.pt")
    blob = load_model_file(trained["residual"].model_path)
    child = save_model_file(str(d / "child.pt"), kind="net", config=blob["config"], metadata={},
                            tensors=blob["tensors"], parent_path=str(d / "parent.pt"))
    assert AgePredictor.load(child).name == "Real + Residual DEX"
    shutil.copy(trained["l1"].model_path, d / "parent.pt")
    with pytest.raises(ModelFileError, match="has changed"):
        AgePredictor.load(child)


def test_cross_fitted_residual(tmp_path):
    """Fold models leave one fold each out and predict it; the residual trains on those held-out
    predictions (its own targets), while valid/test still use the parent's predictions."""
    from modeling.train import holdout_split

    kept, held = holdout_split(10, "2/3", seed=0)
    assert len(held) in (3, 4) and not set(kept) & set(held) and len(kept) + len(held) == 10
    folds = [holdout_split(10, f"{k}/3", seed=0)[1] for k in (1, 2, 3)]
    assert sorted(np.concatenate(folds).tolist()) == list(range(10))  # every image held out once
    for bad in ("2", "0/2", "3/2", "1/1", "a/b"):
        with pytest.raises(TrainingError):
            holdout_split(10, bad, seed=0)

    data = make_appa(tmp_path / "data", counts=(12, 6, 6))
    common = dict(SMALL, cache_dir=str(tmp_path / ".cache"), eval_test=False, freeze_blocks=2, feature_views=2)
    parent = train(TrainConfig(data=data, out=str(tmp_path / "parent"), **common))
    fold_files = []
    for k in (1, 2):
        r = train(TrainConfig(data=data, out=str(tmp_path / f"fold{k}"), holdout_fold=f"{k}/2", **common))
        assert r.metrics["heldout_real_mae"] >= 0
        meta = load_model_file(r.model_path)["metadata"]
        assert meta["split_sizes"]["train"] + meta["split_sizes"]["heldout"] == 12
        fold_files.append(os.path.join(tmp_path, f"fold{k}", "predictions_heldout.csv"))
    res = train(TrainConfig(data=data, out=str(tmp_path / "res"), residual_of=parent.model_path,
                            cross_fit_predictions=fold_files, **common))
    assert res.status == "finished" and os.path.isfile(res.model_path)
    # the residual's scale was picked on valid and is applied by the predictor; the chain is never
    # worse on valid than the parent alone (epoch 0, scale 0)
    scale = load_model_file(res.model_path)["config"]["residual_scale"]
    assert 0.0 <= scale <= 1.0 and res.metrics["residual_scale"] == scale
    assert res.metrics["valid_real_mae"] <= parent.metrics["valid_real_mae"] + 1e-3
    chain = AgePredictor.load(res.model_path)
    assert chain.stages[1].weight == scale
    imgs = faces(3)
    from modeling.data import pil_to_tensor
    from modeling.predictor import net_outputs
    r, _ = net_outputs(chain.stages[1].net, pil_to_tensor(imgs, chain.stages[1].size), device=chain.device)
    base = np.array([o["real_age"] for o in AgePredictor.load(parent.model_path).predict(imgs)])
    got = np.array([o["real_age"] for o in chain.predict(imgs)])
    assert np.allclose(got, base + scale * r.numpy(), atol=1e-3)

    # bad input: one fold's file only, a missing file, a fold model of a residual
    with pytest.raises(TrainingError, match="cover"):
        train(TrainConfig(data=data, out=str(tmp_path / "res1"), residual_of=parent.model_path,
                          cross_fit_predictions=fold_files[:1], **common))
    with pytest.raises(TrainingError, match="not found"):
        train(TrainConfig(data=data, out=str(tmp_path / "res2"), residual_of=parent.model_path,
                          cross_fit_predictions=[str(tmp_path / "nope.csv")], **common))
    garbled = tmp_path / "garbled.csv"
    garbled.write_text("file_name,prediction\n000001.jpg,abc\n")
    with pytest.raises(TrainingError, match="not a held-out predictions file"):
        train(TrainConfig(data=data, out=str(tmp_path / "res4"), residual_of=parent.model_path,
                          cross_fit_predictions=[str(garbled)], **common))
    with pytest.raises(TrainingError, match="fold models"):
        train(TrainConfig(data=data, out=str(tmp_path / "res3"), residual_of=parent.model_path,
                          holdout_fold="1/2", **common))


def testbest_residual_scale():
    from modeling.train.residual import best_residual_scale

    truth = np.array([10.0, 20.0, 30.0, 40.0])
    parent = truth + np.array([2.0, -2.0, 2.0, -2.0])
    # the residual over-corrects by a factor of 2: half of it is right
    assert best_residual_scale(-2 * (parent - truth), parent, truth) == pytest.approx(0.5)
    # a residual that only hurts is switched off
    assert best_residual_scale(parent - truth, parent, truth) == 0.0
    assert best_residual_scale(truth - parent, parent, truth) == 1.0


def testmixup(tmp_path):
    from modeling.train.batches import mixup

    gen = torch.Generator().manual_seed(0)
    x = torch.stack([torch.full((3, 4, 4), float(i)) for i in range(8)])
    y = label_distributions(np.arange(8) * 10.0, 0, 100, 0.0)
    mx, my = mixup(x, y, 0.4, gen, seed=(0, 1))
    assert mx.shape == x.shape and my.shape == y.shape
    assert torch.allclose(my.sum(1), torch.ones(8))
    # each label is the same mix of two ages as its image: expectation = 10 x pixel value
    expect = (my * torch.arange(101)).sum(1)
    assert torch.allclose(expect, mx[:, 0, 0, 0] * 10, atol=1e-3)
    # every image stays mostly itself (weight >= 0.5 on its own): within half the range of the batch
    assert ((mx[:, 0, 0, 0] - torch.arange(8.0)).abs() <= 3.5 + 1e-5).all()
    # scalar labels (L1 head) and a training run with it
    _, mv = mixup(x, torch.arange(8.0), 0.4, gen, seed=(0, 2))
    assert mv.shape == (8,)
    data = make_appa(tmp_path / "data", counts=(12, 6, 6))
    r = train(TrainConfig(data=data, out=str(tmp_path / "mix"), mixup=0.4, eval_test=False,
                          cache_dir=str(tmp_path / ".cache"), **SMALL))
    assert r.status == "finished" and os.path.isfile(r.model_path)
    with pytest.raises(TrainingError, match="mixup"):
        train(TrainConfig(data=data, out=str(tmp_path / "bad"), mixup=-1.0, **SMALL))
    assert not os.path.exists(tmp_path / "bad" / "model.pt")


def test_ensemble(trained, tmp_path):
    """Two Real DEX nets averaged into one model file: its age is the mean of theirs, it can be a
    residual's parent, and what cannot be averaged is refused with the file named."""
    from modeling.ensemble import main as ensemble_main
    from modeling.ensemble import make_ensemble

    common = dict(SMALL, cache_dir=trained["cache"])
    other = train(TrainConfig(data=trained["data"], out=str(tmp_path / "real_dex_seed1"), target="real",
                              **dict(common, seed=1)))
    members = [trained["real"].model_path, other.model_path]
    path = make_ensemble(members, str(tmp_path / "ens" / "model.pt"))
    ens = AgePredictor.load(path)
    assert ens.name == "Real DEX (ensemble of 2)" and ens.target == "real"
    imgs = faces(3)
    got = ens.predict(imgs)
    singles = [AgePredictor.load(m).predict(imgs) for m in members]
    for i in range(3):
        assert got[i]["real_age"] == pytest.approx((singles[0][i]["real_age"] + singles[1][i]["real_age"]) / 2, abs=1e-3)
        mean_dist = (np.array(singles[0][i]["distribution"]) + np.array(singles[1][i]["distribution"])) / 2
        assert np.allclose(got[i]["distribution"], mean_dist, atol=1e-5)
    meta = load_model_file(path)["metadata"]
    assert [m["path"] for m in meta["members"]] == members and meta["dataset_fingerprint"]
    m = sensitivity_map(path, imgs[0], size=64)
    assert m.shape == (64, 64) and abs(m.max() - 1) < 1e-5
    # a residual on the ensemble, and the paper tables with it
    res = train(TrainConfig(data=trained["data"], out=str(tmp_path / "ens_res"), target="real",
                            residual_of=path, **common))
    assert AgePredictor.load(res.model_path).name == "Real + Residual DEX (ensemble of 2)"
    tables = E.paper_tables(trained["data"], {"ens": path}, cache_dir=trained["cache"])
    assert any(r["method"] == "ens" for r in tables["table3"])

    # bad input: one file, a residual member, mixed heads, mixed targets, a tampered member
    bad = {"one": [members[0]], "residual": [members[0], trained["residual"].model_path],
           "heads": [members[0], trained["l1"].model_path], "targets": [members[0], trained["apparent"].model_path]}
    messages = {"one": "at least two", "residual": "first-stage", "heads": "differs", "targets": "differs"}
    for case, paths in bad.items():
        with pytest.raises(ModelFileError, match=messages[case]):
            make_ensemble(paths, str(tmp_path / f"bad_{case}.pt"))
        assert not os.path.exists(tmp_path / f"bad_{case}.pt")
    assert ensemble_main(["--models", *bad["heads"], "--out", str(tmp_path / "cli_bad.pt")]) == 2
    assert ensemble_main(["--models", *members, "--out", str(tmp_path / "cli.pt")]) == 0
    assert AgePredictor.load(str(tmp_path / "cli.pt")).name == "Real DEX (ensemble of 2)"
