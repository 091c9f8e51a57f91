"""knowundo-bench: a plugin-based benchmark harness for knowledge unlearning in LLMs.

Plugin authors import from :mod:`knowundo_bench.api`; their tests use
:mod:`knowundo_bench.testing`.
"""

__version__ = "0.2.0"  # the one place the version is written (pyproject reads it)
