"""Core harness: hookspecs, plugin manager, specs, data, models, training, metrics, runner."""
