"""Offline twins of lm-eval's general tasks (their YAML configs and helpers) and the bridge
that runs them on the in-memory model. Part of evaluate: imports what evaluate may."""
