"""Training: the one loop every method shares, losses, relabelling, multi-process and FSDP, step
meters, and the UnlearnContext methods receive. Imports evaluate and the layers below it."""
