"""Model sources (``model.source``): the tiny offline Llama, hub models, GGUF files."""
