"""Built-in text generators for ``knowundo-bench build`` (``generator.name``)."""
