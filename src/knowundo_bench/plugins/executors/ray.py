"""Executor ``ray``: a suite's units fanned out over a Ray cluster (``pip install
knowundo-bench[ray]``).

Each vanilla model is one Ray task (it trains the model into the cache and writes its
record); each method unit is one task that waits for its vanilla task, loads the cached
model and writes its own record atomically. Units are submitted longest first (by
earlier records of the same method). A worker killed mid-unit is retried by Ray
(``max_retries``); a unit that keeps failing gets a ``failed`` record and the others
finish. Ctrl-C cancels the tasks; finished records stay.

Without a cluster address a local Ray is started, bound to 127.0.0.1 with no dashboard;
with one (``auto``, ``ray://host:10001``) the harness connects to that cluster and never
starts a head. The address comes from the command line (``--address``) or ``RAY_ADDRESS``,
never from a spec: a shared spec must not send a run to, and unpickle results from, a
cluster its author chose. Workers receive an allow-list of variables (the harness's, the
hub's, proxies without their credentials, CA bundles), never secrets. The output and cache directories must be on a
filesystem every node sees (``KNOWUNDO_BENCH_CACHE`` may point there): checked at
start-up on every node.
"""

from __future__ import annotations

import os
import shutil
import time
import urllib.parse
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from knowundo_bench.api import (
    ExecutorInfo,
    InputError,
    Params,
    PendingUnit,
    Suite,
    SuitePayload,
    UnitResult,
    describe,
    hookimpl,
)

# Environment the workers need as the driver has it (auto-started workers inherit it anyway),
# by name: the harness's own settings, the hub's (never its token), the proxies the hub is
# reached through and the CA bundles that trust them.
FORWARDED_PREFIX = "KNOWUNDO_BENCH_"
FORWARDED_NAMES = {
    *("HF_HOME", "HF_HUB_CACHE", "HF_DATASETS_CACHE", "HF_ENDPOINT", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"),
    *("HF_HUB_DISABLE_TELEMETRY", "HF_HUB_ETAG_TIMEOUT", "HF_HUB_DOWNLOAD_TIMEOUT", "HF_XET_CACHE"),
    *("TRANSFORMERS_OFFLINE", "TRANSFORMERS_CACHE", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR"),
    "CURL_CA_BUNDLE",
}
FORWARDED_PROXIES = {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"}  # either case
RUNNING = ".running"  # in the output directory: one marker per unit a worker is running


class RayParams(Params):
    address: str | None = Field(
        None, description="never in a spec: the cluster comes from --address or RAY_ADDRESS (none: a local Ray)"
    )
    num_cpus: float = Field(1, gt=0, description="CPUs per unit (also its torch threads)")
    num_gpus: float = Field(0, ge=0, description="GPUs per unit")
    memory_gb: float | None = Field(None, gt=0, description="memory per unit (GB), for Ray's scheduler")
    max_retries: int = Field(2, ge=0, description="retries of a unit whose worker died")
    local_cpus: int | None = Field(None, ge=1, description="CPUs of an auto-started local Ray (default: all)")

    @field_validator("address")
    @classmethod
    def _not_from_a_spec(cls, value: str | None) -> str | None:
        if value is not None:
            raise ValueError(
                "a cluster address comes from the command line (--address) or RAY_ADDRESS, never from a spec "
                "(a shared spec could send the run to, and take results from, any cluster)"
            )
        return value


def without_userinfo(url: str) -> str:
    """``url`` without ``user:password@`` (a proxy's credentials stay on the driver)."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def _forwarded_env() -> dict[str, str]:
    """The variables workers need, by name (never a token, a key or a secret: a
    runtime_env is readable through Ray's state API on a shared cluster, so tokens such as
    HF_TOKEN reach workers another way: their own environment, or the hub's token file)."""
    forwarded = {}
    for key, value in os.environ.items():
        if key.upper() in FORWARDED_PROXIES:
            forwarded[key] = without_userinfo(value) if key.upper() != "NO_PROXY" else value
        elif key in FORWARDED_NAMES or key.startswith(FORWARDED_PREFIX):
            forwarded[key] = value
    return forwarded


def run_marked(
    worker: Callable[..., list[UnitResult]], payload: SuitePayload, labels: list[str], threads: int, *after: Any
) -> list[UnitResult]:
    """The suite's ``worker`` with a marker in the output directory while the unit runs, from
    which the driver counts the running units (Ray's task states need its dashboard)."""
    marker = Path(payload.output_dir) / RUNNING / f"{labels[0]}.{os.getpid()}"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    try:
        return worker(payload, labels, threads, *after)
    finally:
        marker.unlink(missing_ok=True)


def running_units(output_dir: Path, labels: set[str]) -> int:
    """Units among ``labels`` a worker has started and not finished (a killed worker's
    marker counts until its retry ends)."""
    folder = output_dir / RUNNING
    if not folder.is_dir():
        return 0
    return len({name.rsplit(".", 1)[0] for name in os.listdir(folder)} & labels)


def start(params: RayParams) -> bool:
    """Connect to the cluster ``RAY_ADDRESS`` names (``--address`` sets it), or start a
    local Ray on 127.0.0.1; returns whether this call started Ray (and so must shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    common: dict[str, Any] = {
        "runtime_env": {"env_vars": _forwarded_env()},
        "log_to_driver": False,
        "configure_logging": False,
    }
    address = os.environ.get("RAY_ADDRESS", "").strip() or None
    if address is None:
        ray.init(
            address="local",
            num_cpus=params.local_cpus or os.cpu_count(),
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            **common,
        )
    else:
        try:
            ray.init(address=address, **common)
        except (ConnectionError, RuntimeError, ValueError) as error:
            message = f"--address (RAY_ADDRESS): cannot connect to Ray at {address!r}: {describe(error)}"
            raise InputError(message) from error
    return True


def check_shared_paths(paths: list[Path]) -> None:
    """Every node sees ``paths``: a token the driver writes must be readable from a task
    pinned to each alive node."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    token = uuid.uuid4().hex
    probes = []
    for path in paths:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".knowundo-probe-{token}"
        probe.write_text(token)
        probes.append(probe)

    def sees(files: list[str], expected: str) -> list[str]:
        return [file for file in files if not (Path(file).is_file() and Path(file).read_text() == expected)]

    check = ray.remote(num_cpus=0)(sees)
    try:
        for node in [node for node in ray.nodes() if node.get("Alive")]:
            strategy = NodeAffinitySchedulingStrategy(node_id=node["NodeID"], soft=False)
            missing = ray.get(check.options(scheduling_strategy=strategy).remote([str(p) for p in probes], token))
            if missing:
                folder = Path(missing[0]).parent
                raise InputError(
                    f"execution: Ray node {node.get('NodeManagerAddress', node['NodeID'])} does not see {folder}; "
                    "put the output and cache directories on a filesystem every node mounts "
                    "(KNOWUNDO_BENCH_CACHE may point there)"
                )
    finally:
        for probe in probes:
            probe.unlink(missing_ok=True)


def longest_first(units: list[PendingUnit]) -> list[PendingUnit]:
    """Method units by decreasing expected cost (unknown costs last, in spec order)."""
    return sorted(units, key=lambda unit: -(unit.expected_seconds or 0.0))


def execute(params: RayParams, suite: Suite) -> None:
    import ray

    started_here = start(params)
    try:
        payload = suite.payload
        check_shared_paths([Path(payload.output_dir), Path(payload.cache_dir)])
        threads = max(1, int(params.num_cpus))
        options: dict[str, Any] = {
            "num_cpus": params.num_cpus,
            "num_gpus": params.num_gpus,
            "max_retries": params.max_retries,
        }
        if params.memory_gb is not None:
            options["memory"] = int(params.memory_gb * 2**30)
        task = ray.remote(run_marked).options(**options)
        submitted: dict[Any, PendingUnit] = {}
        vanilla_refs: dict[str, Any] = {}
        for unit in suite.pending:
            if unit.method is None:
                vanilla_refs[unit.label] = task.remote(suite.worker, payload, [unit.label], threads)
                submitted[vanilla_refs[unit.label]] = unit
        for unit in longest_first([u for u in suite.pending if u.method is not None]):
            after = [vanilla_refs[unit.vanilla]] if unit.vanilla in vanilla_refs else []
            submitted[task.remote(suite.worker, payload, [unit.label], threads, *after)] = unit
        wait_for(submitted, suite)
    finally:
        if started_here:
            ray.shutdown()


def wait_for(submitted: dict[Any, PendingUnit], suite: Suite) -> None:
    """Collect the tasks as they finish: progress on the driver, a line per unit, a
    ``failed`` record for a unit whose task failed for good; Ctrl-C cancels the rest."""
    import ray

    remaining = list(submitted)
    failed = 0
    started = time.perf_counter()
    output_dir = Path(suite.payload.output_dir)

    def status() -> str:
        running = running_units(output_dir, {submitted[ref].label for ref in remaining})
        return f"{running} running, {len(remaining)} left, {failed} failed"

    try:
        with suite.board.task(f"units ({len(remaining)})", len(remaining)) as reporter:
            while remaining:
                ready, remaining = ray.wait(remaining, num_returns=1, timeout=2.0)
                if not ready:
                    reporter.advance(0, status=status())
                    continue
                unit = submitted[ready[0]]
                try:
                    [result] = ray.get(ready[0])
                except Exception as error:  # the worker died more often than it may retry, or the vanilla task failed
                    reason = describe(getattr(error, "cause", None) or error)
                    suite.record_failure(unit.label, f"the unit's task failed: {reason}")
                    result = UnitResult(unit.label, "failed", time.perf_counter() - started, reason)
                else:
                    suite.finished(result)
                failed += result.status == "failed"
                suite.board.log(
                    f"{unit.label}: {result.status} in {result.seconds:.1f} s"
                    + (f" ({result.error})" if result.error else "")
                )
                reporter.advance(1, status=status())
    except KeyboardInterrupt:
        for ref in remaining:
            ray.cancel(ref, force=True)
        raise
    finally:
        shutil.rmtree(output_dir / RUNNING, ignore_errors=True)


@hookimpl
def register_executors() -> list[ExecutorInfo]:
    return [
        ExecutorInfo(
            name="ray",
            description="Units as Ray tasks on a local or existing cluster (pip install knowundo-bench[ray]).",
            params=RayParams,
            execute=execute,
        )
    ]
