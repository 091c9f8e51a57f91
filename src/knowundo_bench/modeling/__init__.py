"""Models as the harness holds them: bundles with their tokenizer, the model-factory protocol,
LoRA, devices and train/eval mode. Imports only core."""
