#!/usr/bin/env bash
# The GPU path in one run: CUDA unit tests, table5.py at the LLaMA-2-7B shape, SmolLM2 on
# device: cuda, the Ray executor with one GPU per unit; one summary block at the end, exit
# non-zero on any failure. On a machine without CUDA every part says "no CUDA device:
# skipped" and it exits 0. See benchmarks/gpu_check.py and benchmarks/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3
exec "$PYTHON" benchmarks/gpu_check.py "$@"
