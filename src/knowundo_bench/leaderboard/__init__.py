"""The read side: result records aggregated over seeds with intervals, exported (markdown, CSV,
JSON), plotted and sampled. Imports only records and core; never torch or the engine."""

from knowundo_bench.leaderboard.aggregate import leaderboard_rows, load_records
from knowundo_bench.leaderboard.export import render

__all__ = ["leaderboard_rows", "load_records", "render"]
