"""The GPU path in one run (``benchmarks/gpu_check.sh``): what only a GPU can verify.

    bash benchmarks/gpu_check.sh [--out DIR]

On a CUDA machine, each part in its own process with a time limit (about 8 minutes in
all on one H100/H200-class card):

1. the CUDA unit tests (``pytest -m "not slow" -k cuda``);
2. ``benchmarks/table5.py`` at the LLaMA-2-7B shape (random bf16 weights, LoRA r 8) for
   GA, GA+GD, GA+KL and MemFlex;
3. SmolLM2-135M-Instruct (the ``gguf`` source) on ``device: cuda`` with GA+GD and
   MemFlex on the privacy domain (the shared KnowUnDo data when present, else the
   synthetic authors);
4. the quickstart through the Ray executor with ``num_gpus: 1`` per unit.

It ends with one summary block (per part: status and wall time; per method: s/step, peak
GB, MFU; per unit: wall seconds) and exits 1 if any part failed. Without CUDA every part
prints "no CUDA device: skipped" and it exits 0 (a test runs it so).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "benchmark_specs"


@dataclass
class Part:
    name: str
    command: list[str]
    timeout: int  # seconds
    results: Path | None = None  # a results directory to summarise
    status: str = "not run"
    seconds: float = 0.0


def smollm2_spec(out: Path) -> Path:
    """The SmolLM2 privacy spec on CUDA with GA+GD and MemFlex only, written to ``out``
    with absolute paths (synthetic authors when the shared data is absent)."""
    spec = yaml.safe_load((SPECS / "smollm2-privacy.yaml").read_text())
    spec["name"] = "gpu-check-smollm2"
    spec["model"]["device"] = "cuda"
    spec["methods"] = [m for m in spec["methods"] if m["name"] in ("ga_gd", "memflex")][:2]
    data = (SPECS / spec["data"].get("path", "")).resolve()
    if spec["data"].get("source") == "local" and data.is_dir():
        spec["data"]["path"] = str(data)
    else:
        spec["data"] = {"source": "synthetic", "domain": "privacy", "n_authors": 8}
    general = spec.get("ood_retain", {}).get("path")
    if general and (SPECS / general).resolve().is_dir():
        spec["ood_retain"]["path"] = str((SPECS / general).resolve())
    else:
        spec.pop("ood_retain", None)
    spec.get("eval", {}).pop("general_data_dir", None)
    spec.get("eval", {}).pop("general", None)
    path = out / "smollm2-gpu.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def parts(out: Path) -> list[Part]:
    python = sys.executable
    cli = [python, "-m", "knowundo_bench", "run", "--no-progress"]
    return [
        Part("cuda unit tests", [python, "-m", "pytest", "-q", "-m", "not slow", "-k", "cuda", "tests"], 180),
        Part(
            "table5 7B (bf16, LoRA r 8)",
            [python, str(ROOT / "benchmarks" / "table5.py"), "--methods", "ga", "ga_gd", "ga_kl", "memflex"],
            300,
        ),
        *(
            Part(
                f"table5 7B padding {arm}",
                [python, str(ROOT / "benchmarks" / "table5.py"), "--methods", "ga_gd", "--varied-lengths", *flags],
                150,
            )
            for arm, flags in (("free", []), ("to the longest", ["--pad-to-longest"]))
        ),
        Part(
            "smollm2 privacy on cuda",
            [*cli[:4], str(smollm2_spec(out)), "--output", str(out / "smollm2"), *cli[4:]],
            240,
            out / "smollm2",
        ),
        Part(
            "ray executor, num_gpus 1",
            [
                *cli[:4],
                str(SPECS / "quickstart.yaml"),
                "--output",
                str(out / "ray"),
                "--executor",
                "ray",
                "--set",
                "model.device=cuda",
                "--set",
                "execution.num_gpus=1",
                *cli[4:],
            ],
            180,
            out / "ray",
        ),
    ]


def run_part(part: Part, out: Path) -> None:
    log = out / f"{part.name.split()[0]}-{abs(hash(part.name)) % 10_000}.log"
    started = time.perf_counter()
    try:
        done = subprocess.run(part.command, cwd=ROOT, capture_output=True, text=True, timeout=part.timeout)
        part.status = "ok" if done.returncode == 0 else f"failed (exit {done.returncode}, log {log})"
        log.write_text(done.stdout + "\n--- stderr ---\n" + done.stderr)
        if part.name.startswith("table5"):
            print(done.stdout)
    except subprocess.TimeoutExpired as expired:
        part.status = f"failed (over {part.timeout} s, log {log})"
        log.write_text(f"{expired.stdout or ''}\n--- stderr ---\n{expired.stderr or ''}")
    part.seconds = time.perf_counter() - started


def unit_lines(results: Path) -> list[str]:
    from knowundo_bench.records.files import load_record

    lines = []
    for path in sorted(results.glob("*.json")):
        record = load_record(path)
        if record is None:
            continue
        training = record.training
        timing = ""
        if training is not None and training.sec_per_step is not None:
            mfu = f"{training.mfu:.1%}" if training.mfu is not None else "–"
            timing = f"  {training.sec_per_step:.3f} s/step  {training.peak_mem_gb or 0:.2f} GB  MFU {mfu}"
        lines.append(f"    {path.stem:<14} {record.status:<9} {record.wall_seconds or 0:7.1f} s{timing}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="logs and results (default: a temporary folder)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="gpu-check-"))
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("KNOWUNDO_BENCH_CACHE", str(out / "cache"))
    checks = parts(out)
    cuda = torch.cuda.is_available()
    card = torch.cuda.get_device_name(0) if cuda else "no CUDA device"
    for part in checks:
        if cuda:
            run_part(part, out)
        else:
            part.status = "no CUDA device: skipped"
    print("=" * 72)
    print(f"gpu_check: {card}; torch {torch.__version__}, CUDA {torch.version.cuda}; logs in {out}")
    for part in checks:
        print(f"  {part.name:<28} {part.status:<40} {part.seconds:7.1f} s")
        if part.results is not None and part.results.is_dir():
            print("\n".join(unit_lines(part.results)))
    print("=" * 72)
    return 1 if any(part.status.startswith("failed") for part in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
