"""Built-in attacks after unlearning (quantization, relearning)."""
