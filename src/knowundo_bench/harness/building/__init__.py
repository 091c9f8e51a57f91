"""``knowundo-bench build``: the benchmark construction pipeline of the paper's section
2.2 and appendix B, with pluggable text generators."""
