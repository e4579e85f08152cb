"""Training under torchrun: two processes with gloo on CPU (DistributedDataParallel), launched the
way the app's worker launches them (modeling.train.launch). The model file is the usual one, the
two ranks stay in sync, the cached frozen-stage features work, and a second run resumes from the
checkpoint rank 0 wrote."""
import json
import math
import os
import sys

import pytest

from modeling.modelfile import load_model_file
from modeling.predictor import AgePredictor
from modeling.train import TrainConfig, TrainingError, train_with_torchrun
from modeling.train.launch import torchrun_command
from tests.modeling.modeling_fixture import SMALL, face_files, make_appa

pytestmark = pytest.mark.slow


def epochs_in(out):
    lines = [json.loads(x) for x in open(os.path.join(out, "metrics.jsonl"))]
    return [x for x in lines if x["event"] == "epoch"]


def test_two_gloo_processes_train_in_sync_and_resume(tmp_path):
    from PIL import Image

    data = make_appa(tmp_path / "data", counts=(24, 8, 8))
    out = str(tmp_path / "ddp")
    common = dict(SMALL, cache_dir=str(tmp_path / ".cache"), batch_size=4, freeze_blocks=1, feature_views=2)
    common.pop("epochs")
    common.pop("threads")
    seen = []
    r = train_with_torchrun(TrainConfig(data=data, out=out, epochs=1, **common), 2, on_progress=seen.append)
    assert r.status == "finished" and r.epochs_run == 1 and r.model_path == os.path.join(out, "model.pt")
    assert [e["event"] for e in seen if e["event"] in ("start", "epoch", "done")] == ["start", "epoch", "done"]
    start = next(e for e in seen if e["event"] == "start")
    # each rank trains on its half of the 24 images: 12 / batch 4 = 3 steps per epoch
    assert start["processes"] == 2 and start["steps_per_epoch"] == 3
    digests = epochs_in(out)[-1]["params_digest"]
    assert len(digests) == 2 and digests[0] == digests[1]  # the ranks hold the same weights

    # the same model file as a single process writes (no DDP "module." prefix), predictions finite
    blob = load_model_file(r.model_path)
    assert blob["metadata"]["train_config"]["freeze_blocks"] == 1
    assert not any(".module." in k or k.startswith("module.") for k in blob["tensors"])
    p = AgePredictor.load(r.model_path)
    ages = [x["real_age"] for x in p.predict([Image.open(f).convert("RGB") for f in face_files()[:3]])]
    assert all(math.isfinite(a) for a in ages)

    # a second torchrun resumes from rank 0's checkpoint: epoch 1 is not trained again
    r2 = train_with_torchrun(TrainConfig(data=data, out=out, epochs=2, **common), 2)
    assert r2.status == "finished" and r2.epochs_run == 2
    epochs = epochs_in(out)
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert epochs[-1]["params_digest"][0] == epochs[-1]["params_digest"][1]
    assert "resuming from" in open(os.path.join(out, "torchrun.log")).read()


def test_what_torchrun_is_asked_to_run_and_what_it_refuses(tmp_path, monkeypatch):
    from modeling.train import launch

    cfg = TrainConfig(data="d", out=str(tmp_path), epochs=3, mixup=0.4)
    cmd = torchrun_command(cfg, 4)
    assert cmd[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=4"]
    assert cmd[5:7] == ["-m", "modeling.train"] and "--mixup" in cmd and "--stop-file" not in cmd
    with pytest.raises(TrainingError, match="one process"):
        train_with_torchrun(TrainConfig(data="d", out=str(tmp_path), prepare_only=True), 2)
    # a run that fails (here a stand-in for torchrun, to spare the seconds of starting one): the end
    # of its log is in the error
    monkeypatch.setattr(launch, "torchrun_command", lambda cfg, n: [
        sys.executable, "-c", "print('error: dataset folder missing'); raise SystemExit(2)"])
    with pytest.raises(TrainingError, match="(?s)exited with status 2.*dataset folder missing"):
        train_with_torchrun(TrainConfig(data="d", out=str(tmp_path / "o")), 2)
