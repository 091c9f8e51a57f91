"""Experiment trackers (Trackio, W&B, MLflow): what a logger plugin receives
(:mod:`~knowundo_bench.tracking.contract`) and how a run's finished units reach the
loggers a spec or ``--log-to`` names (:mod:`~knowundo_bench.tracking.feed`). Imports
core and records only; torch-free, and no tracker library: the logger plugins import
theirs when a run names them."""
