"""Data-parallel scaling of the training step (DistributedDataParallel under torchrun): training
images/s of EfficientNet-Lite0 (all layers, the gpu-10min recipe's input size and batch per
process) at 1, 2, ... N processes, on synthetic batches (no data loading: the step and the gradient
all-reduce only). Then, with two or more GPUs, the app's own trainer (``modeling.train`` under
torchrun, through ``modeling.train.launch``) on a generated dataset, at 1 and N processes.

    python bench/bench_ddp_scaling.py                    # every visible GPU; bench/out/ddp_scaling/report.json
    python bench/bench_ddp_scaling.py --processes 1,2,4 --steps 30 --size 192 --batch 128
    python bench/bench_ddp_scaling.py --device cpu --processes 1,2 --size 64 --batch 16 --steps 5   # a check of the script

With one GPU only, the extra processes are *simulated*: every rank runs on cuda:0 and the gradients
go through gloo (NCCL refuses two ranks on one GPU), which says what the per-step synchronisation
costs, not how several GPUs scale; the report says "simulated". One call on a lent GPU machine:
``bash bench/gpu_ddp.sh``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
OUT = os.path.join(ROOT, "bench", "out", "ddp_scaling")


def worker(args) -> int:
    """One rank of the synthetic-step measurement (started by torchrun)."""
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F
    from torch.nn.parallel import DistributedDataParallel

    from modeling.nets import AgeNet

    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    cuda = args.device == "cuda"
    simulated = cuda and world > torch.cuda.device_count()
    device = torch.device("cuda", 0 if simulated else int(os.environ.get("LOCAL_RANK", "0"))) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
    else:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    backend = "nccl" if cuda and not simulated else "gloo"
    if world > 1:
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=10))
    torch.manual_seed(0)
    net = AgeNet("efficientnet_lite0", "dex", pretrained=False, image_size=args.size).to(device).train()
    net.to(memory_format=torch.channels_last)
    model = DistributedDataParallel(net, device_ids=[device.index] if cuda else None) if world > 1 else net
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    x = torch.rand(args.batch, 3, args.size, args.size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 101, (args.batch,), device=device)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def sync():
        if cuda:
            torch.cuda.synchronize()
        if world > 1:
            dist.barrier()

    for _ in range(args.warmup):
        step()
    sync()
    t = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    seconds = time.perf_counter() - t
    if rank == 0:
        print("RESULT " + json.dumps({"processes": world, "backend": backend if world > 1 else "none",
                                      "simulated": simulated, "device": str(device), "seconds": round(seconds, 3),
                                      "images_per_s": round(world * args.batch * args.steps / seconds, 1),
                                      "images_per_s_per_process": round(args.batch * args.steps / seconds, 1)}),
              flush=True)
    if world > 1:
        dist.destroy_process_group()
    return 0


def torchrun(n: int, argv: list[str]) -> dict:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}",
           os.path.abspath(__file__), "--worker", *argv]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ROOT})
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode or not lines:
        return {"processes": n, "error": f"rc {proc.returncode}: {(proc.stdout + proc.stderr)[-1500:]}"}
    return json.loads(lines[-1][len("RESULT "):])


def trainer_run(n: int, device: str, data: str, size: int, batch: int) -> dict:
    """modeling.train itself under torchrun (the app's path) for two epochs."""
    from modeling.train import TrainConfig, train_with_torchrun

    out = os.path.join(OUT, f"trainer_{n}")
    cfg = TrainConfig(data=data, out=out, target="real", backbone="efficientnet_lite0", pretrained="none",
                      image_size=size, batch_size=batch, epochs=2, warmup_steps=10, device=device, resume="no",
                      cache_dir=os.path.join(OUT, ".cache"), progress_bar=False)
    t = time.time()
    try:
        r = train_with_torchrun(cfg, n)
    except Exception as exc:  # noqa: BLE001 - the report says what failed
        return {"processes": n, "error": str(exc)[-1500:]}
    from modeling.predictor import AgePredictor

    AgePredictor.load(r.model_path, device="cpu")  # the usual model file
    return {"processes": n, "status": r.status, "images_per_s": round(r.images_per_second, 1),
            "train_seconds": round(r.train_seconds, 1), "wall_seconds": round(time.time() - t, 1),
            "valid_real_mae": r.metrics.get("valid_real_mae")}


def generated_dataset(root: str, n_train: int) -> str:
    """An APPA-REAL-layout folder of noise images with made-up ages (throughput only)."""
    import numpy as np
    from PIL import Image

    if os.path.isfile(os.path.join(root, "gt_avg_test.csv")):
        return root
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("valid", 256), ("test", 256)):
        os.makedirs(os.path.join(root, split), exist_ok=True)
        rows = []
        for i in range(n):
            name = f"{i:06d}.jpg"
            Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(
                os.path.join(root, split, name + "_face.jpg"), quality=80)
            rows.append(f"{name},0,,,{int(rng.integers(1, 90))}\n")
        with open(os.path.join(root, f"gt_avg_{split}.csv"), "w") as fh:
            fh.write("file_name,num_ratings,apparent_age_avg,apparent_age_std,real_age\n" + "".join(rows))
    return root


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--device", choices=["cuda", "cpu"], default=None, help="default: cuda when there is a GPU")
    ap.add_argument("--processes", default=None, help="comma-separated counts (default: 1..visible GPUs, or 1,2,4 "
                                                      "simulated on one GPU)")
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--batch", type=int, default=128, help="per process")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--trainer-images", type=int, default=8192, help="training images of the trainer runs (0: none)")
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    import torch

    from bench.machine import cpu_model

    gpus = torch.cuda.device_count()
    args.device = args.device or ("cuda" if gpus else "cpu")
    counts = ([int(x) for x in args.processes.split(",")] if args.processes
              else list(range(1, gpus + 1)) if gpus > 1 else [1, 2, 4])
    report = {"device": torch.cuda.get_device_name(0) if args.device == "cuda" else cpu_model(),
              "gpus_visible": gpus, "torch": str(torch.__version__), "size": args.size, "batch_per_process": args.batch,
              "steps": args.steps, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "synthetic": []}
    argv = ["--device", args.device, "--size", str(args.size), "--batch", str(args.batch), "--steps", str(args.steps),
            "--warmup", str(args.warmup)]
    for n in counts:
        report["synthetic"].append(torchrun(n, argv))
        print(json.dumps(report["synthetic"][-1]), flush=True)
    base = next((r["images_per_s"] for r in report["synthetic"] if r.get("processes") == 1 and "images_per_s" in r), None)
    for r in report["synthetic"]:
        if base and "images_per_s" in r:
            r["speed_up"] = round(r["images_per_s"] / base, 2)
    n_real = gpus if args.device == "cuda" else max(counts)
    if args.trainer_images and (args.device == "cpu" or gpus > 1):
        data = generated_dataset(os.path.join(OUT, "data"), args.trainer_images)
        report["trainer"] = [trainer_run(n, args.device, data, args.size, args.batch) for n in sorted({1, n_real})]
        print(json.dumps(report["trainer"]), flush=True)
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "report.json"), "w") as fh:
        json.dump(report, fh, indent=2)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
