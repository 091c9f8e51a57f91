"""A run of a spec: resolving it against the plugins, planning units, identity and reuse, the
vanilla model, one unit, the worker entry point and the orchestrator. Imports plugin and below."""
