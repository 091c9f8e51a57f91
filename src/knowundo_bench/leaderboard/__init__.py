"""Leaderboard: aggregate result records and export them (markdown, CSV, JSON)."""

from knowundo_bench.leaderboard.aggregate import leaderboard_rows, load_records
from knowundo_bench.leaderboard.export import render

__all__ = ["leaderboard_rows", "load_records", "render"]
