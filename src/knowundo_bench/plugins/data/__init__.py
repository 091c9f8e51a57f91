"""Benchmark data sources (``data.source``): KnowUnDo from a folder or the hub, synthetic authors."""
