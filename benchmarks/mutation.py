"""`make mutate`: mutation testing of the pure core with mutmut (issue 30).

mutmut (configured in pyproject.toml's ``[tool.mutmut]``) rewrites the modules where a
wrong line changes a number (losses, metrics and evaluation scoring, the leaderboard's
aggregation and statistics, seeds and reuse keys, the MemFlex selection), one mutant at a
time, and runs for each mutant the fast-tier tests that reach its function. This prints
the kill ratio and every surviving mutant with its diff, and fails when the ratio is
below the target or a survivor is not one CONTRIBUTING.md accepts as equivalent.

Not part of CI (about an hour on 2 cores): run it before a release and after
changing those modules. ``--resume`` keeps mutmut's earlier results (mutants/).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = 0.95
KILLED = ("killed", "timeout")  # a mutant that made a test fail or hang was caught
# "no tests": no fast-tier test reached the function; it counts against the ratio
CONTRIBUTING = ROOT / "CONTRIBUTING.md"
SECTION = "## Accepted mutation survivors"


def mutmut(*arguments: str, capture: bool = True) -> subprocess.CompletedProcess[str]:
    binary = Path(sys.executable).with_name("mutmut")
    # One torch thread: OpenMP's pool does not survive mutmut's fork (a forked child hangs).
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run(
        [str(binary), *arguments], cwd=ROOT, env=environment, text=True, capture_output=capture, check=False
    )


def results() -> dict[str, str]:
    """Every mutant's status, from ``mutmut results --all true``."""
    listing = mutmut("results", "--all", "true").stdout
    found = {}
    for line in listing.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name and "__mutmut_" in name:
            found[name] = status
    return found


def accepted() -> dict[str, str]:
    """The survivors CONTRIBUTING.md accepts, each with why it is equivalent."""
    text = CONTRIBUTING.read_text(encoding="utf-8")
    if SECTION not in text:
        return {}
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"^- `([\w.]+__mutmut_\d+)`: (.+)$", section, flags=re.M))


def diff_of(name: str) -> str:
    """The changed lines of a mutant (``-`` the original, ``+`` the mutant)."""
    shown = mutmut("show", name).stdout.splitlines()
    return "\n".join(f"      {line}" for line in shown if line[:1] in "+-" and not line.startswith(("+++", "---")))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resume", action="store_true", help="keep the results of an earlier run (mutants/)")
    arguments = parser.parse_args()
    link = ROOT / "shared"  # shipped specs read ../shared; from mutants/ that is ./shared
    made_link = not link.exists() and not link.is_symlink() and (ROOT.parent / "shared").is_dir()
    if made_link:
        link.symlink_to(Path("..") / "shared")
    if not arguments.resume:
        shutil.rmtree(ROOT / "mutants", ignore_errors=True)
    started = time.perf_counter()
    try:
        print("mutmut run: mutating the pure core, the fast tier against each mutant ...", flush=True)
        run = mutmut("run")
    finally:
        if made_link:
            link.unlink()
    if run.returncode != 0:
        sys.stdout.write(run.stdout[-3000:] + run.stderr[-3000:])
        print(f"mutmut run failed (exit {run.returncode})")
        return 1
    statuses = results()
    counts = Counter(statuses.values())
    considered = len(statuses) - counts.get("skipped", 0)
    killed = sum(counts.get(status, 0) for status in KILLED)
    ratio = killed / considered if considered else 0.0
    minutes = (time.perf_counter() - started) / 60
    print(f"\n{len(statuses)} mutants in {minutes:.1f} min: " + ", ".join(f"{n} {s}" for s, n in counts.most_common()))
    print(f"kill ratio {ratio:.3f} ({killed} of {considered}; target {TARGET})")
    unchecked = counts.get("not checked", 0)
    if unchecked:
        print(f"incomplete: {unchecked} mutants not checked (rerun with --resume to go on)")
    survivors = sorted(n for n, status in statuses.items() if status not in (*KILLED, "skipped", "not checked"))
    known = accepted()
    new = [name for name in survivors if name not in known]
    if survivors:
        print(f"\nsurvivors ({len(survivors)}; {len(survivors) - len(new)} accepted in CONTRIBUTING.md):")
    for name in survivors:
        print(f"  {name}: {statuses[name]}" + (f" (accepted: {known[name]})" if name in known else " (NEW)"))
        print(diff_of(name))
    stale = sorted(set(known) - set(survivors))
    if stale:
        print(f"\naccepted in CONTRIBUTING.md but no longer surviving (remove them): {', '.join(stale)}")
    if new or ratio < TARGET or unchecked:
        print(f"\nFAILED: {len(new)} survivors not accepted in CONTRIBUTING.md; kill ratio {ratio:.3f}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
