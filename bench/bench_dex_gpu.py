"""GPU training throughput (images/s) of the DEX nets with bf16 autocast + channels_last.
Synthetic inputs (no data, no network); part of bench/gpu.sh.

    python bench/bench_dex_gpu.py [--size 224] [--batch 64] [--steps 30]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from modeling.nets import AgeNet  # noqa: E402


def throughput(backbone, size, batch, steps, device):
    net = AgeNet(backbone, "dex", pretrained=False, image_size=size).to(device).train()
    net.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    x = torch.rand(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 101, (batch,), device=device)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = F.cross_entropy(net(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(5):
        step()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("no GPU: this benchmark needs CUDA", file=sys.stderr)
        return 1
    dev = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    out = {"device": torch.cuda.get_device_name(0), "torch": str(torch.__version__), "image_size": args.size,
           "batch": args.batch, "precision": "bf16 autocast, channels_last"}
    for bb in ("efficientnet_lite0", "vgg16"):
        out[f"{bb}_train_images_per_s"] = round(throughput(bb, args.size, args.batch, args.steps, dev), 1)
        print(json.dumps({bb: out[f"{bb}_train_images_per_s"]}), flush=True)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
