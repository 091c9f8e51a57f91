"""Foundations every layer uses: one-line input errors, validation messages in the file's words,
fault injection, progress bars, hub checks and the cache folder. Imports nothing of knowundo_bench."""
