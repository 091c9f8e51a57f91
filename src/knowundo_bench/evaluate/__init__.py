"""Measuring a model: metric primitives, both scopes scored (behind a guard, if any), general
tasks through lm-eval, a model's full report and curves. Imports records, config, benchmark, modeling, core."""
