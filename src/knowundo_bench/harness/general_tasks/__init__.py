"""Offline twins of lm-eval's built-in general tasks (YAML configs and their helpers)."""
