"""Data-parallel training under ``torchrun`` (DistributedDataParallel).

``torchrun --nproc-per-node N -m modeling.train ...`` starts N copies of the trainer with
WORLD_SIZE, RANK and LOCAL_RANK in their environment. Each process trains on its shard of every
epoch (``DistributedSampler``), gradients are averaged across processes after every backward pass,
so the weights stay identical everywhere. Rank 0 alone evaluates, logs, writes ``metrics.jsonl``,
the checkpoint and the model file, and decides (learning rate on the time budget, stop, early
stop); the others follow its decisions, which it broadcasts. Without torchrun (WORLD_SIZE unset or
1) every helper here is a no-op and training is the single-process loop it always was.

Backend: NCCL on CUDA (one GPU per process, ``cuda:LOCAL_RANK``), gloo on CPU.
"""
from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

# Rank 0 builds the caches (resized faces, frozen-stage features) while the others wait at a
# barrier; on all of UTKFace on 2 CPU cores that took about 9 minutes.
COLLECTIVE_TIMEOUT = datetime.timedelta(hours=2)


@dataclass(frozen=True)
class Group:
    world: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


SINGLE = Group()


def from_environment() -> Group:
    """The process group torchrun describes in the environment (or a single process)."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return SINGLE
    return Group(world, int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")))


def start(group: Group, device: torch.device) -> None:
    if group.active and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=COLLECTIVE_TIMEOUT,
                                device_id=device if device.type == "cuda" else None)


def stop(group: Group) -> None:
    if group.active and dist.is_initialized():
        dist.destroy_process_group()


def barrier(group: Group) -> None:
    if group.active:
        dist.barrier()


@contextlib.contextmanager
def main_first(group: Group):
    """Rank 0 runs the block first (it builds on-disk caches), then the others (they find them)."""
    if group.active and not group.main:
        dist.barrier()
    yield
    if group.active and group.main:
        dist.barrier()


def broadcast_floats(group: Group, values: list[float], device: torch.device) -> list[float]:
    """Rank 0's ``values`` on every rank."""
    if not group.active:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return t.tolist()


def gather_objects(group: Group, obj) -> list:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not group.active:
        return [obj]
    out = [None] * group.world
    dist.all_gather_object(out, obj)
    return out


def params_digest(net: torch.nn.Module) -> str:
    """A short hash of the trainable weights: equal on every rank while the ranks stay in sync."""
    h = hashlib.sha256()
    for p in net.parameters():
        if p.requires_grad:
            h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def shard(group: Group, n: int, epoch: int, seed: int) -> torch.Tensor:
    """This rank's shuffled positions of an n-image epoch (``DistributedSampler``, ``set_epoch``;
    the tail that does not divide evenly is dropped, so every rank runs the same number of steps)."""
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(range(n), num_replicas=group.world, rank=group.rank, shuffle=True, seed=seed,
                                 drop_last=True)
    sampler.set_epoch(epoch)
    return torch.tensor(list(iter(sampler)), dtype=torch.long)
