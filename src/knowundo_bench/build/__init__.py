"""`knowundo-bench build`: the benchmark construction pipeline of section 2.2 and appendix B,
with pluggable text generators. Imports plugin and below (never run)."""
