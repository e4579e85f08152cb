"""CPU benchmark of issue 6 on UTKFace (real ages): Real DEX, Real + Residual DEX and a plain L1
regression head on EfficientNet-Lite0, each with a wall-clock budget, then test MAE, speed.

    python bench/bench_dex_cpu.py all        # convert + prepare + train (3 runs) + report
    python bench/bench_dex_cpu.py train      # only the training runs (resumable): train-pair (Real DEX
                                             # and the L1 head side by side), train-folds (the parent's
                                             # recipe without each of CROSS_FIT folds, two at a time),
                                             # then train-residual (on the folds' held-out predictions)
    python bench/bench_dex_cpu.py train-dex  # (instead of train-pair) Real DEX alone with 2 threads;
                                             # train-l1 the same for the L1 head
    python bench/bench_dex_cpu.py report     # evaluate the trained models, speed figures
    python bench/bench_dex_cpu.py app-recipe # (after convert, prepare) the app's CPU retrain: the
                                             # cpu-30min recipe's plan by modeling.plan_runner,
                                             # DEX_MINUTES for everything (bench/out/dex_cpu/app_recipe/)

Everything goes under bench/out/dex_cpu/ (git-ignored); the figures and commands are printed and
written to bench/out/dex_cpu/report.md / report.json.  Needs ../shared/data/utkface/aligned.
Every hyper-parameter comes from modeling.recipes.CPU_30MIN (what the app's CPU retrain runs).
Environment knobs: DEX_MINUTES (30), RES_MINUTES (12), L1_MINUTES (= DEX_MINUTES), SEED, FREEZE_BLOCKS,
FEATURE_VIEWS, EPOCHS (each the recipe's unless set), SPLIT (train,valid,test shares; 75,10,15),
CROSS_FIT (folds for the residual's targets; 4; 0 = the parent's own train-split predictions),
FOLD_MINUTES (15), PAIR (the two runs of train-pair; real_dex,real_l1), PARENT (the
run the folds copy and the residual corrects; else bench/out/dex_cpu/parent.txt, written by
choose-parent; else real_dex).  With two candidate recipes for the parent, run the steps as separate
commands:  PAIR=real_dex,real_dex_mixup ... train-pair; ... choose-parent; ... train-folds;
RES_MINUTES=20 PAIR=real_residual,real_l1 ... train-pair; ... report.  Run the timed steps
(train-pair or train-dex, train-folds, train-residual, report) under the quiet-box lock: flock /tmp/appareal-quiet.lock ...
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.dex_report import parent_run  # noqa: E402
from modeling.recipes import CPU_30MIN  # noqa: E402
from modeling.train import TrainConfig  # noqa: E402
from modeling.train.cli import config_argv  # noqa: E402

OUT = os.path.join(ROOT, "bench", "out", "dex_cpu")
DATA_SRC = os.environ.get("UTK_DIR", os.path.join(ROOT, "..", "shared", "data", "utkface", "aligned"))
DATA = os.path.join(ROOT, "bench", "out", "utkface_appa")
CACHE = os.path.join(ROOT, "bench", "out", ".cache")
PY = sys.executable
SEED = int(os.environ.get("SEED", str(CPU_30MIN.net["seed"])))
DEX_MIN = float(os.environ.get("DEX_MINUTES", "30"))
RES_MIN = float(os.environ.get("RES_MINUTES", "12"))
L1_MIN = float(os.environ.get("L1_MINUTES", str(DEX_MIN)))
# The residual learns Real DEX's error; on the train split Real DEX has fitted its own labels (train
# MAE 2.7 against 4.7 on valid), so the residual's targets come from fold models of the same recipe
# that did not see the image (cross-fitting), trained two at a time before the residual.  With 2
# folds each fold model saw half the data and was much weaker than the parent (5.3 against 4.8),
# so 4 folds (each on 75%).
CROSS_FIT = int(os.environ.get("CROSS_FIT", "4"))
FOLD_MIN = float(os.environ.get("FOLD_MINUTES", "15"))
# train : valid : test shares of the seeded, age-stratified split of UTKFace (fixed once chosen)
SPLIT = tuple(float(x) for x in os.environ.get("SPLIT", "75,10,15").split(","))

# The recipe is modeling.recipes.CPU_30MIN (docs/benchmark_log.md, "Modeling (issue 6)"), the one
# the app's retrain runs on a CPU: EfficientNet-Lite0 at 112 px, the stem and the first
# FREEZE_BLOCKS - 1 blocks frozen and computed once per image for FEATURE_VIEWS views (original,
# mirror, random shift/scale/rotation/colour augmentations), flip TTA on valid/test, an exponential
# moving average of the weights, AdamW + warm-up + cosine over EPOCHS or the wall-clock budget.
# Its two members are real_dex (no mixup) and real_dex_mixup; its residual is real_residual. The
# knobs below only override the recipe's values when they are set.
KNOBS = {"freeze_blocks": os.environ.get("FREEZE_BLOCKS"), "feature_views": os.environ.get("FEATURE_VIEWS"),
         "epochs": os.environ.get("EPOCHS"), "seed": os.environ.get("SEED")}
KNOBS = {k: int(v) for k, v in KNOBS.items() if v}
RUN = {"cache_dir": CACHE, "threads": 1, "progress_bar": False}


def recipe_args(settings: dict) -> list[str]:
    """``python -m modeling.train`` arguments of a recipe's settings (nothing spelled a second time)."""
    config = {**settings, **KNOBS, **RUN}
    cfg = TrainConfig(data=DATA, out="", target="real", **config)
    return config_argv(cfg, only={"data", "target", *config})


# Real DEX and the L1 head train at the same time (one thread each), so that both see the same
# machine load; the frozen stages' features are computed once beforehand ("prepare", not counted in
# the budgets, timed separately).
COMMON = recipe_args(CPU_30MIN.net)
RECIPES = {"real_dex": recipe_args(CPU_30MIN.member_config(0)),
           "real_dex_mixup": recipe_args(CPU_30MIN.member_config(1))}
PAIR = os.environ.get("PAIR", "real_dex,real_l1").split(",")
PARENT = parent_run(OUT)
FOLDS = {f"real_fold{k}": RECIPES[PARENT] + ["--out", f"{OUT}/real_fold{k}", "--holdout-fold", f"{k}/{CROSS_FIT}",
                                             "--max-minutes", str(FOLD_MIN)]
         for k in range(1, CROSS_FIT + 1)}
CROSS_FIT_ARGS = (["--cross-fit-predictions", ",".join(f"{OUT}/{n}/predictions_heldout.csv" for n in FOLDS)]
                  if FOLDS else [])
PARENT_MIXUP = CPU_30MIN.member_config(1 if PARENT == "real_dex_mixup" else 0)["mixup"]
RUNS = {
    **{name: recipe + ["--out", f"{OUT}/{name}", "--max-minutes", str(DEX_MIN)] for name, recipe in RECIPES.items()},
    # The recipe's residual: a fresh net from the ImageNet weights, not from the parent's (the
    # parent's backbone has memorised the training images' ages; see modeling.recipes).
    "real_residual": recipe_args(CPU_30MIN.residual_config()) + [
        "--out", f"{OUT}/real_residual", "--residual-of", f"{OUT}/{PARENT}/model.pt", *CROSS_FIT_ARGS,
        "--max-minutes", str(RES_MIN)],
    # the parent's recipe with the L1 head instead of DEX's
    "real_l1": recipe_args({**CPU_30MIN.net, "head": "l1", "mixup": PARENT_MIXUP}) + [
        "--out", f"{OUT}/real_l1", "--max-minutes", str(L1_MIN)],
}


def load():
    """The 1/5/15-minute load averages, as `uptime` shows them."""
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def rel(a):
    return [os.path.relpath(x, ROOT) if isinstance(x, str) and x.startswith(ROOT) else x for x in a]


def start(args, log_name):
    cmd = [PY, "-m", "modeling.train", *args]
    shown = "python -m modeling.train " + " ".join(shlex.quote(x) for x in rel(args))
    print(f"$ {shown}", flush=True)
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "commands.txt"), "a") as fh:
        fh.write(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} load {load()} {shown}\n")
    log = open(os.path.join(OUT, f"{log_name}.log"), "a")
    return subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT), time.time(), log_name


def wait(*procs):
    for proc, t, name in procs:
        rc = proc.wait()
        print(f"  {name} -> rc {rc} after {time.time() - t:.0f} s (log bench/out/dex_cpu/{name}.log)", flush=True)
        with open(os.path.join(OUT, "commands.txt"), "a") as fh:
            fh.write(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} load {load()} {name} finished, rc {rc}\n")
        if rc:
            raise SystemExit(rc)


def run(args, log_name):
    wait(start(args, log_name))


def convert():
    from modeling.data import convert_named_folder
    summary = convert_named_folder(DATA_SRC, DATA, seed=SEED, proportions=SPLIT)
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "split.json"), "w") as fh:
        json.dump(summary, fh, indent=2)
    print("split:", json.dumps(summary), flush=True)


def prepare():
    """Resized images and the frozen stages' features, once, shared by all runs (the features in two
    processes: the training split's views, and valid + test)."""
    from modeling import data as D

    t = time.time()
    ds = D.read_dataset(DATA)
    for split in D.SPLITS:  # resized once here, so that the two processes below do not both do it
        D.tensor_cache(ds[split], CPU_30MIN.net["image_size"], CACHE, desc=split)
    wait(start(COMMON + ["--out", f"{OUT}/prepare_train", "--prepare-only", "--prepare-splits", "train"], "prepare_train"),
         start(COMMON + ["--out", f"{OUT}/prepare_eval", "--prepare-only", "--prepare-splits", "valid,test"], "prepare_eval"))
    with open(os.path.join(OUT, "prepare_seconds.txt"), "w") as fh:
        fh.write(f"{time.time() - t:.0f}\n")


def train_pair():
    """Two runs side by side (same budget, same machine load): Real DEX and the L1 head, or PAIR."""
    todo = [n for n in PAIR if not os.path.isfile(os.path.join(OUT, n, "model.pt"))]
    wait(*[start(RUNS[n], n) for n in todo])


def train_solo(name):
    """One run alone on the box, with both cores (two torch threads: 1.7x one thread's speed)."""
    if not os.path.isfile(os.path.join(OUT, name, "model.pt")):
        args = list(RUNS[name])
        args[args.index("--threads") + 1] = "2"
        run(args, name)


def choose_parent():
    """The candidate (of RECIPES) with the lowest valid MAE becomes the parent: written to
    parent.txt, which the later steps (run as separate commands) read."""
    from modeling.modelfile import load_model_file

    valid = {n: load_model_file(os.path.join(OUT, n, "model.pt"))["metadata"]["metrics"]["valid_real_mae"]
             for n in RECIPES if os.path.isfile(os.path.join(OUT, n, "model.pt"))}
    if not valid:
        raise SystemExit("choose-parent: no candidate has finished (run train-pair first)")
    best = min(valid, key=valid.get)
    with open(os.path.join(OUT, "parent.txt"), "w") as fh:
        fh.write(best + "\n")
    with open(os.path.join(OUT, "commands.txt"), "a") as fh:
        fh.write(f"parent chosen on valid MAE {json.dumps(valid)}: {best}\n")
    print(f"parent: {best} (valid MAE {json.dumps(valid)})", flush=True)


def train_folds():
    """Real DEX's recipe on each fold's complement, two at a time (one per core): held-out
    predictions for the residual's targets (part of the residual stage; each with FOLD_MINUTES)."""
    todo = [n for n in FOLDS if not os.path.isfile(os.path.join(OUT, n, "model.pt"))]
    for i in range(0, len(todo), 2):
        wait(*[start(FOLDS[n], n) for n in todo[i:i + 2]])


def train_residual():
    """The residual on Real DEX, with its own budget, alone on the box (two threads)."""
    train_solo("real_residual")


def app_recipe():
    """The app's CPU retrain on this split: modeling.plan_runner runs the cpu-30min recipe's plan
    for the real target within DEX_MINUTES (the preparation, the members, their ensemble, and the
    folds and residual when the budget pays for them), alone on the box with all its cores."""
    out = f"{OUT}/app_recipe"
    cmd = [PY, "-m", "modeling.plan_runner", "--data", DATA, "--out", out, "--recipe", CPU_30MIN.name,
           "--target", "real", "--max-minutes", str(DEX_MIN), "--cache-dir", CACHE]
    shown = " ".join(shlex.quote(x) for x in rel(cmd[1:]))
    print(f"$ python {shown}", flush=True)
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "commands.txt"), "a") as fh:
        fh.write(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} load {load()} python {shown}\n")
    t = time.time()
    with open(os.path.join(OUT, "app_recipe.log"), "a") as log:
        rc = subprocess.call(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    print(f"  app_recipe -> rc {rc} after {time.time() - t:.0f} s (log bench/out/dex_cpu/app_recipe.log)", flush=True)
    if rc:
        raise SystemExit(rc)


def report():
    from bench.dex_report import main as report_main
    report_main(OUT, DATA)


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    if what in ("all", "convert"):
        convert()
    if what in ("all", "prepare"):
        prepare()
    if what in ("all", "train", "train-pair"):
        train_pair()
    if what == "choose-parent":
        choose_parent()
    if what == "train-dex":  # instead of train-pair: Real DEX alone, then (if wanted) train-l1
        train_solo("real_dex")
    if what == "train-l1":
        train_solo("real_l1")
    if what in ("all", "train", "train-folds"):
        train_folds()
    if what in ("all", "train", "train-residual"):
        train_residual()
    if what == "app-recipe":
        app_recipe()
    if what in ("all", "report"):
        report()
