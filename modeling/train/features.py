"""Frozen early stages (``--freeze-blocks`` with ``--feature-views``): their output is computed
once per view of every image, cached on disk, and training runs only the stages after them (the
big CPU speed-up)."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time

import torch
from tqdm import tqdm

from modeling.train.batches import augment_batch
from modeling.train.config import TrainConfig
from modeling.train.splits import TrainData

log = logging.getLogger(__name__)


def same_stages(a, b, n) -> bool:
    """Whether nets ``a`` and ``b`` have identical weights in their first ``n`` feature stages."""
    sa = [m.state_dict() for m in a.features.blocks()[:n]]
    sb = [m.state_dict() for m in b.features.blocks()[:n]]
    return all(x.keys() == y.keys() and all(torch.equal(x[k].cpu(), y[k].cpu()) for k in x) for x, y in zip(sa, sb))


def _cache_path(net, x_uint8, n_stages, n_views, cfg, cache_dir, desc) -> str:
    """Keyed by the frozen weights, a sample of the images and the augmentation settings."""
    h = hashlib.sha256()
    for stage in net.features.blocks()[:n_stages]:
        for t in stage.state_dict().values():
            h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    h.update(x_uint8[:: max(1, len(x_uint8) // 64)].numpy().tobytes())
    h.update(json.dumps([cfg.backbone, n_stages, n_views, len(x_uint8), cfg.seed, cfg.shift, cfg.scale,
                         cfg.rotation, cfg.color_jitter]).encode())
    return os.path.join(cache_dir, f"prefix_{desc}_{h.hexdigest()[:20]}.pt")


def prefix_features(net, x_uint8, n_stages, n_views, cfg: TrainConfig, device, cache_dir, desc=""):
    """Output of the first ``n_stages`` (frozen) stages for ``n_views`` views of each image:
    (n_views, N, C, H, W) float16 on CPU.  View 0 is the image, 1 its mirror, others random
    augmentations (seeded).  Cached on disk, keyed by the frozen weights and the images."""
    path = _cache_path(net, x_uint8, n_stages, n_views, cfg, cache_dir, desc)
    if os.path.isfile(path):
        return torch.load(path, map_location="cpu", weights_only=True)
    gen = torch.Generator().manual_seed(cfg.seed + 7)
    net.eval()
    out = None
    bar = tqdm(total=n_views * len(x_uint8), desc=f"frozen stages on {desc}", disable=None, mininterval=10)
    bs = 128
    for v in range(n_views):
        for i in range(0, len(x_uint8), bs):
            xb = x_uint8[i:i + bs]
            if v == 0:
                xb = xb.float().div_(255.0)
            elif v == 1:
                xb = xb.float().div_(255.0).flip(3)
            else:
                xb = augment_batch(xb, cfg, gen)
            xb = xb.to(device)
            if cfg.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with torch.no_grad():
                f = net.prefix(xb, n_stages).to("cpu", torch.float16)
            if out is None:
                out = torch.empty((n_views, len(x_uint8), *f.shape[1:]), dtype=torch.float16)
            out[v, i:i + len(f)] = f
            bar.update(len(f))
    bar.close()
    os.makedirs(cache_dir, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"  # two processes may build the same cache at once
    torch.save(out, tmp)
    os.replace(tmp, path)
    return out


@torch.no_grad()
def suffix_predict(net, feats, start, device, tta, use_amp, batch_size=256):
    """The net's predictions from cached frozen-stage features (views averaged when ``tta``)."""
    net.eval()
    vals = []
    n_views = feats.shape[0] if tta else 1
    for i in range(0, feats.shape[1], batch_size):
        acc = 0
        for v in range(n_views):
            h = feats[v, i:i + batch_size].to(device).float()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                out = net(h, start).float()
            acc = acc + net.outputs_to_prediction(out)[0]
        vals.append((acc / n_views).cpu())
    return torch.cat(vals)


def frozen_features(cfg: TrainConfig, net, data: TrainData, device, cache_dir: str) -> tuple[dict | None, int]:
    """(split -> cached frozen-stage features, the first stage that trains), or (None, 0) when the
    run trains on images end to end."""
    if not (cfg.feature_views and cfg.freeze_blocks):
        return None, 0
    start_stage = cfg.freeze_blocks
    feats = {}
    t_feat = time.monotonic()
    n_eval_views = min(2, cfg.eval_views) if cfg.tta else 1
    for split in data.samples:
        if split == "heldout" or (cfg.prepare_only and cfg.prepare_splits and split not in cfg.prepare_splits):
            continue
        n_views = cfg.feature_views if split == "train" else n_eval_views
        source = data.full_train if (split == "train" and data.fold_index is not None) else data.tensors[split]
        feats[split] = prefix_features(net, source, start_stage, n_views, cfg, device, cache_dir, desc=split)
    if data.fold_index is not None and "train" in feats:
        # views 0 and 1 of the training cache are the image and its mirror: the eval views
        feats["heldout"] = feats["train"][:n_eval_views, data.fold_index[1]]
        feats["train"] = feats["train"][:, data.fold_index[0]]
    log.info("frozen-stage features ready in %.0f s (%d stages, shapes %s)", time.monotonic() - t_feat,
             start_stage, [tuple(v.shape) for v in feats.values()])
    return feats, start_stage
