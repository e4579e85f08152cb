"""The progress of a running training run, step by step, as the run page shows it.

``RunProgress`` listens to the plan runner (``modeling.plan_runner.PlanListener``) and is the
training core's progress callback for the step in hand: it keeps every step's status, progress,
epoch, valid MAE, start and end in the run's ``plan`` (JSON), and the run's overall progress,
current step, epoch and valid MAE on the run itself, written at most every PROGRESS_EVERY_S. It
reads the run's cancel flag at most every CANCEL_CHECK_EVERY_S. The ETA is computed from these on
the way out (``modelhub.selectors.plan_payload``).
"""
from __future__ import annotations

import time

from django.utils import timezone

from modelhub.models import TrainingRun
from modelhub.services.promotion import json_safe
from modelhub.services.runs import append_log
from modeling.plan import Plan, Step
from modeling.plan_runner import PlanListener

PROGRESS_EVERY_S = 1.0
CANCEL_CHECK_EVERY_S = 1.0


def _now() -> str:
    return timezone.now().isoformat()


class RunProgress(PlanListener):
    def __init__(self, run_id: int, plan: Plan, state: dict | None = None):
        self.run_id = run_id
        self.plan = plan
        # step key -> {"status": pending | running | done, "progress", "epoch", "epochs", "valid_mae", ...}
        self.state = state or {}
        for step in plan.steps:
            self.state.setdefault(step.key, {"status": "pending", "progress": 0.0})
        self.step: Step | None = None
        self.last_write = 0.0
        self.last_cancel_check = 0.0
        self.cancel = False

    # -- the run's figures

    def overall(self) -> float:
        """The run's progress, each step counted by its progress weight."""
        weights = {s.key: s.progress_weight or 0.01 for s in self.plan.steps}
        done = sum(weights[k] * float(self.state[k].get("progress", 0.0)) for k in weights)
        return round(min(0.99, done / sum(weights.values())), 4)

    def plan_json(self) -> dict:
        return json_safe({**self.plan.to_dict(), "state": self.state})  # (jsonb refuses NaN)

    def write(self, **fields) -> None:
        fields.setdefault("heartbeat_at", timezone.now())
        TrainingRun.objects.filter(pk=self.run_id).update(plan=self.plan_json(), progress=self.overall(), **fields)
        self.last_write = time.monotonic()

    # -- the plan runner's events

    def step_started(self, step: Step, budget_minutes: float | None) -> None:
        self.step = step
        self.state[step.key] = {"status": "running", "progress": 0.0, "epoch": 0,
                                "epochs": step.config.get("epochs"), "valid_mae": None, "started_at": _now(),
                                "budget_minutes": None if budget_minutes is None else round(budget_minutes, 2)}
        self.write(stage=step.title[:64], epoch=0, valid_mae=None)
        append_log(self.run_id, f"{step.title}: started" + (f" (budget {budget_minutes:.1f} min)"
                                                           if budget_minutes else ""))

    def step_progress(self, step: Step, record: dict) -> None:
        self(record)

    def step_finished(self, step: Step, metrics: dict, resumed: bool) -> None:
        st = self.state.setdefault(step.key, {})
        st.update(status="done", progress=1.0, finished_at=st.get("finished_at") or _now(),
                  wall_seconds=metrics.get("wall_seconds"), status_detail=metrics.get("status"),
                  test_mae=metrics.get(f"test_{step.target}_mae"), valid_mae=metrics.get(f"valid_{step.target}_mae",
                                                                                      st.get("valid_mae")))
        self.write()
        if resumed:
            append_log(self.run_id, f"{step.title}: already done by an earlier attempt")
        else:
            mae = metrics.get(f"test_{step.target}_mae")
            append_log(self.run_id, f"{step.title}: done" + (f" ({metrics['status']})" if metrics.get("status") else "")
                       + (f", test {step.target} MAE {mae:.3f}" if mae is not None else ""))

    def step_ended_early(self, status: str) -> None:
        """The step in hand did not finish: "failed" or "cancelled" (shown as such on the run page)."""
        if self.step is not None and self.state.get(self.step.key, {}).get("status") == "running":
            self.state[self.step.key].update(status=status, finished_at=_now())
            self.write()

    # -- the training core's callback for the step in hand

    def __call__(self, record: dict) -> None:
        if self.step is None:
            return
        st = self.state[self.step.key]
        event = record.get("event")
        if event == "epoch":
            epoch = int(record.get("epoch", 0))
            epochs = st.get("epochs") or 1
            st.update(epoch=epoch, progress=max(st.get("progress", 0.0), min(1.0, epoch / epochs)))
            if record.get("valid_mae") is not None:
                st["valid_mae"] = float(record["valid_mae"])
            self.write(epoch=epoch, valid_mae=st["valid_mae"])
            mae = record.get("valid_mae")
            append_log(self.run_id, f"{self.step.title}: epoch {epoch}"
                       + (f", valid MAE {mae:.3f}" if mae is not None else "")
                       + (" (parent only)" if record.get("note") else ""))
        elif event == "step":
            st["progress"] = max(st.get("progress", 0.0), min(1.0, float(record.get("fraction", 0.0))))
            if time.monotonic() - self.last_write >= PROGRESS_EVERY_S:
                self.write()
        elif event == "start":
            append_log(self.run_id, f"{self.step.title}: training on {record.get('device')}"
                       + (f" x {record['processes']} processes" if record.get("processes", 1) > 1 else "")
                       + f" ({record.get('n_train')} train / {record.get('n_valid')} valid / "
                       f"{record.get('n_test')} test)")

    def should_stop(self) -> bool:
        now = time.monotonic()
        if now - self.last_cancel_check >= CANCEL_CHECK_EVERY_S:
            self.last_cancel_check = now
            self.cancel = TrainingRun.objects.filter(pk=self.run_id, cancel_requested=True).exists()
        return self.cancel
