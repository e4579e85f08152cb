"""CPU speed of the trained Real DEX (bench/out/dex_cpu/real_dex/model.pt): inference ms/face at
batch 1 and 32, and full fine-tuning images/s (all layers, batch 32), with 1 and 2 torch threads.

    python bench/bench_dex_speed.py
"""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CODE = """
import sys, json, torch; sys.path.insert(0, {root!r})
torch.set_num_threads({t})
from bench.dex_report import speed
sp, _, _, _ = speed({model!r}, {data!r}, n_check=64)
sp["threads"] = {t}
print(json.dumps(sp))
"""
if __name__ == "__main__":
    model = os.path.join(ROOT, "bench", "out", "dex_cpu", "real_dex", "model.pt")
    data = os.path.join(ROOT, "bench", "out", "utkface_appa")
    for t in (1, 2):
        out = subprocess.check_output([sys.executable, "-c", CODE.format(root=ROOT, t=t, model=model, data=data)])
        print(out.decode().strip().splitlines()[-1], flush=True)
