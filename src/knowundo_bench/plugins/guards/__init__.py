"""Built-in guards (request filters in front of a model)."""
