"""knowundo-bench: a plugin-based benchmark harness for knowledge unlearning in LLMs."""

__version__ = "0.1.0"
