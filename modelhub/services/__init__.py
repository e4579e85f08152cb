"""Writes of the age models, one module per concern: `runs` (asking for, cancelling, queueing a
training run; its lock and progress), `training` (running a run's stages), `promotion` (model
versions: registering, the promotion gate, activation, rollback) and `predictions` (the active
models on the players' photos, the model player). Import from the concern's module."""
