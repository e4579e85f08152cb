"""Train DEX / Residual DEX / L1-regression age models on a dataset in the APPA-REAL layout.

Command line::

    python -m modeling.train --data DIR --out runs/real_dex --target real --max-minutes 30
    python -m modeling.train --data DIR --out runs/real_res --residual-of runs/real_dex/model.pt

Python (what the Celery task calls)::

    from modeling.train import TrainConfig, train
    result = train(TrainConfig(data=..., out=...), on_progress=callback, should_stop=lambda: False)
    result.model_path, result.metrics

Every epoch writes ``<out>/checkpoint.pt`` (resumed automatically when the config matches, or
with ``--resume``), appends to ``<out>/metrics.jsonl`` and keeps the best weights by validation
MAE (early stopping with ``patience``).  The finished model is ``<out>/model.pt``: a
self-contained model file (see modeling.modelfile).  A run that cannot go as configured raises
``TrainingError`` (bad data: ``modeling.data.DatasetError``).

The steps live in ``run`` (the order of a run), ``splits`` (the data), ``batches`` (augmentation,
labels, mixup), ``features`` (frozen early stages), ``residual`` (Residual DEX targets and scale),
``engine`` (an epoch, evaluation, checkpoints), ``cli`` (the command line), ``distributed`` (the
same under ``torchrun --nproc-per-node N``: DistributedDataParallel) and ``launch`` (a torchrun
run as a subprocess, followed through its metrics.jsonl).
"""
from modeling.train.batches import label_distributions
from modeling.train.cli import build_parser, main
from modeling.train.config import TrainConfig, TrainingError, TrainResult
from modeling.train.launch import train_with_torchrun
from modeling.train.run import train
from modeling.train.splits import holdout_split

__all__ = ["TrainConfig", "TrainResult", "TrainingError", "build_parser", "holdout_split", "label_distributions",
           "main", "train", "train_with_torchrun"]
