"""Run ``modeling.train`` under ``torchrun`` as a subprocess and follow it as if it ran here.

``train_with_torchrun(cfg, processes)`` starts ``python -m torch.distributed.run --standalone
--nproc-per-node N -m modeling.train <cfg as arguments>``, feeds the records rank 0 appends to
``<out>/metrics.jsonl`` to ``on_progress`` while it runs, stops it through its stop file when
``should_stop()`` says so, and returns the same ``TrainResult`` that ``train()`` would (read from
the run's "done" record). Its output goes to ``<out>/torchrun.log``.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from modeling.train.cli import config_argv
from modeling.train.config import TrainConfig, TrainingError, TrainResult

REPO_ROOT = Path(__file__).resolve().parents[2]
POLL_S = 0.5


def torchrun_command(cfg: TrainConfig, processes: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
            "-m", "modeling.train", *config_argv(cfg)]


class _Follower:
    """New lines of a metrics.jsonl that the trainer may delete and start again (a fresh run)."""

    def __init__(self, path: str):
        self.path = path
        self.offset = os.path.getsize(path) if os.path.exists(path) else 0
        self.buffer = ""

    def records(self) -> list[dict]:
        if not os.path.exists(self.path):
            return []
        if os.path.getsize(self.path) < self.offset:  # started afresh: the old file was removed
            self.offset, self.buffer = 0, ""
        with open(self.path) as fh:
            fh.seek(self.offset)
            chunk = fh.read()
            self.offset = fh.tell()
        lines = (self.buffer + chunk).split("\n")
        self.buffer = lines.pop()  # an unfinished last line waits for the rest
        return [json.loads(x) for x in lines if x.strip()]


def _result(records: list[dict], cfg: TrainConfig) -> TrainResult | None:
    for rec in reversed(records):
        if rec.get("event") == "done":
            fields = {k: rec[k] for k in TrainResult.__dataclass_fields__ if k in rec}
            return TrainResult(**fields)
        if rec.get("event") == "stopped":
            return TrainResult(model_path="", status="stopped", epochs_run=int(rec.get("epoch", 0)), best_epoch=-1)
    return None


def _log_tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def _end(proc: subprocess.Popen) -> None:
    """Terminate torchrun's process group (torchrun and its trainers), then kill what is left."""
    for sig, wait_s in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def train_with_torchrun(cfg: TrainConfig, processes: int, *, on_progress=None, should_stop=None,
                        env: dict | None = None) -> TrainResult:
    """``train(cfg)`` in ``processes`` torchrun processes (DistributedDataParallel)."""
    if cfg.prepare_only:
        raise TrainingError("--prepare-only runs in one process, not under torchrun")
    os.makedirs(cfg.out, exist_ok=True)
    stop_file = os.path.join(cfg.out, "STOP")
    if os.path.exists(stop_file):
        os.remove(stop_file)
    cfg = replace(cfg, stop_file=stop_file, progress_bar=False)
    follower = _Follower(os.path.join(cfg.out, "metrics.jsonl"))
    log_path = Path(cfg.out) / "torchrun.log"
    child_env = {**os.environ, **(env or {})}
    child_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), child_env.get("PYTHONPATH", "")) if p)
    seen: list[dict] = []
    with open(log_path, "a") as log:
        proc = subprocess.Popen(torchrun_command(cfg, processes), cwd=str(REPO_ROOT), env=child_env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            while True:
                rc = proc.poll()
                for rec in follower.records():
                    seen.append(rec)
                    if on_progress:
                        on_progress(rec)
                if rc is not None:
                    break
                if should_stop and should_stop() and not os.path.exists(stop_file):
                    Path(stop_file).touch()
                time.sleep(POLL_S)
        except BaseException:
            _end(proc)  # the launcher is going away: its torchrun and the trainers go with it
            raise
    result = _result(seen, cfg)
    if rc != 0 or result is None:
        raise TrainingError(f"torchrun with {processes} processes exited with status {rc}; the end of "
                            f"{log_path}:\n{_log_tail(log_path)}")
    return result
