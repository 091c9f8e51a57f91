"""Command line of knowundo-bench (the text of ``knowundo-bench --help``)."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from knowundo_bench import __version__
from knowundo_bench.core.environment import environment
from knowundo_bench.core.errors import InputError, WriteError, describe

HELP = """Benchmark harness for knowledge unlearning in LLMs (KnowUnDo).

Run a benchmark spec with "knowundo-bench run SPEC.yaml", then read its results
with leaderboard, compare, samples and plot. Bad input exits 2 with one line;
--debug shows the traceback behind it.
"""

# Plain help and click's plain usage errors (no boxes, no markup): text that reads the
# same in a terminal, a log file and a bug report.
app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help=HELP,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
EXIT_FAILED = 1  # a method failed, or an internal error
EXIT_BAD_INPUT = 2
EXIT_TARGET_MISSED = 3  # a vanilla model missed vanilla.target_accuracy (vanilla.require_target: true)
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT

_debug = False  # set by --debug for this invocation


def _show_version(value: bool) -> None:
    if value:
        sys.stdout.write(f"knowundo-bench {__version__}\n")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="print the version and exit"),
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="on an error, show the full traceback too")] = False,
) -> None:
    global _debug
    _debug = debug


class Format(str, Enum):
    md = "md"
    csv = "csv"
    json = "json"


def _stderr() -> Console:
    return Console(stderr=True, soft_wrap=True, highlight=False)


def say_error(message: str) -> None:
    """``error: message`` on stderr, the message printed as written (never read as markup)."""
    _stderr().print(Text("error:", style="bold red") + Text(f" {message}"))


DEBUG_HINT = "knowundo-bench --debug ... shows the traceback"


def fail(error: InputError) -> None:
    if _debug:
        sys.stderr.write("".join(traceback.format_exception(error)))
    wrapped = error.__cause__ is not None and not _debug  # a library's failure, reported in one line
    say_error(f"{error} ({DEBUG_HINT})" if wrapped else str(error))
    raise typer.Exit(EXIT_BAD_INPUT)


@contextmanager
def reported() -> Iterator[None]:
    """Every failure is one line on stderr: bad input exits 2, anything else (a bug) 1 and
    asks for --debug; with --debug the traceback comes first. Ctrl-C passes through."""
    try:
        yield
    except InputError as error:
        fail(error)
    except WriteError as error:  # disk full, no permission: the path and the system's reason
        if _debug:
            sys.stderr.write("".join(traceback.format_exception(error)))
        say_error(str(error))
        raise typer.Exit(EXIT_BAD_INPUT if error.unwritable else EXIT_FAILED) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as error:
        if _debug:
            raise
        say_error(f"internal error, {describe(error)} ({DEBUG_HINT})")
        raise typer.Exit(EXIT_FAILED) from None


@app.command(short_help="run a spec: vanilla model, methods, records, leaderboard")
def run(
    spec: Annotated[Path, typer.Argument(metavar="SPEC", help="benchmark spec (YAML)", show_default=False)],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="results directory")] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="KEY=VALUE",
            help="override a spec field by its dotted path (methods.0.lr=1e-4, seed=3); repeatable; "
            "validated like the file and kept in the records",
        ),
    ] = None,
    executor: Annotated[
        str | None,
        typer.Option("--executor", metavar="NAME", help="where units run: local (default) or ray (execution.executor)"),
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            metavar="ADDR",
            help="an existing Ray cluster: auto or ray://host:10001 (sets RAY_ADDRESS; never from a spec)",
        ),
    ] = None,
    trust_remote_code: Annotated[
        bool,
        typer.Option("--trust-remote-code", help="let a spec's trust_remote_code run code from a model's repository"),
    ] = False,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="recompute every unit (and replace another spec's records in the output directory); "
            "cached vanilla weights are reused",
        ),
    ] = False,
    log_samples: Annotated[
        bool, typer.Option("--log-samples", help="write samples/<unit>.jsonl (as eval.log_samples: true)")
    ] = False,
    log_to: Annotated[
        list[str] | None,
        typer.Option(
            "--log-to", metavar="NAME", help="also log each unit to this tracker: trackio, wandb, mlflow; repeatable"
        ),
    ] = None,
) -> None:
    """Run a benchmark spec: vanilla model, every method, result records, leaderboard.

    The leaderboard table goes to stdout, logs and progress to stderr. Rerunning the
    same command resumes: finished units are reused.
    """
    from contextlib import ExitStack
    from dataclasses import replace

    from knowundo_bench.config.reading import planned_output
    from knowundo_bench.core.progress import stderr_console
    from knowundo_bench.records.layout import record_path
    from knowundo_bench.records.lock import locked

    # of an accelerate launch: the one process that logs, prints and holds the folder's lock
    main = int(os.environ.get("RANK", "0")) == 0
    console = stderr_console() if main else Console(quiet=True)
    runner = None
    try:
        with reported(), ExitStack() as held:
            placement = [f"execution.executor={executor}"] if executor else []
            every = [*(overrides or ()), *placement]
            early = planned_output(spec, every, output) if main else None
            if early is not None:  # before torch and the plugins load: a second run stops at once
                held.enter_context(locked(early, "run"))

            from knowundo_bench.core.permissions import Granted, check_remote_code
            from knowundo_bench.core.progress import ProgressBoard
            from knowundo_bench.leaderboard import leaderboard_rows
            from knowundo_bench.leaderboard.terminal import show_leaderboard
            from knowundo_bench.plugin.manager import get_plugins
            from knowundo_bench.run.resolution import load_spec
            from knowundo_bench.run.reuse import output_directory
            from knowundo_bench.run.runner import Runner

            plugins = get_plugins()
            # where the units run is not part of the run's identity: applied like --set, not kept as one
            resolved = replace(load_spec(spec, plugins, every, log_to or ()), overrides=tuple(overrides or ()))
            granted = Granted(trust_remote_code=trust_remote_code)
            for field, params in resolved.plugin_params():
                check_remote_code(params, field, granted)
            if log_samples:
                evaluation = resolved.spec.eval.model_copy(update={"log_samples": True})
                resolved = replace(resolved, spec=resolved.spec.model_copy(update={"eval": evaluation}))
            directory = output_directory(resolved, output)
            if main and (early is None or early.resolve() != directory.resolve()):
                held.enter_context(locked(directory, "run"))
            with ProgressBoard(console, enabled=progress) as board, environment(RAY_ADDRESS=address):
                runner = Runner(resolved, plugins, directory, board, force=force)
                outcome = runner.run()
            rows = leaderboard_rows(outcome.output_dir) if main else []
    except KeyboardInterrupt:
        if runner is None:
            console.print(Text("interrupted before any unit ran"))
        else:
            saved = sum(record_path(runner.output_dir, unit.label).is_file() for unit in runner.units)
            console.print(
                Text(
                    f"interrupted: {saved} of {len(runner.units)} units saved in {runner.output_dir}; "
                    "rerun the same command to resume"
                )
            )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if not main:
        return
    show_leaderboard(rows, f"knowundo-bench leaderboard {outcome.output_dir} --format md")
    console.print(Text(f"results: {outcome.output_dir}"))
    if outcome.failed:
        console.print(Text(f"failed methods: {', '.join(outcome.failed)}", style="red"))
        raise typer.Exit(EXIT_FAILED)
    if outcome.target_missed and resolved.spec.vanilla.require_target:
        say_error(
            f"{', '.join(outcome.target_missed)} missed vanilla.target_accuracy "
            f"({resolved.spec.vanilla.target_accuracy}%): raise vanilla.epochs or lr, or set "
            "vanilla.require_target: false to accept it"
        )
        raise typer.Exit(EXIT_TARGET_MISSED)


@app.command(short_help="build a KnowUnDo-style domain from a build spec (appendix B's pipeline)")
def build(
    spec: Annotated[Path, typer.Argument(metavar="BUILD", help="build spec (YAML)", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="folder to write the domain into", show_default=False)],
    allow_key_env: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-key-env",
            metavar="NAME",
            help="let the generator send this variable's value as its key, though its name does not look like "
            "an API key's (…_API_KEY, …_KEY, …_TOKEN); repeatable",
        ),
    ] = None,
    trust_remote_code: Annotated[
        bool,
        typer.Option("--trust-remote-code", help="let a spec's trust_remote_code run code from a model's repository"),
    ] = False,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
) -> None:
    """Build a benchmark domain: generate question-answer pairs per category with the
    spec's generator, Self-Check, deduplicate, split, and write
    {unlearn,retention}_{train,val}.json with datacard.json and DATACARD.md.

    Load the result with data: {source: local, path: OUTPUT}. Rerunning the same
    command resumes: finished instances and every generator answer are reused.
    """
    from contextlib import ExitStack

    from knowundo_bench.build.pipeline import run_build
    from knowundo_bench.build.spec import load_build_spec
    from knowundo_bench.core.permissions import Granted
    from knowundo_bench.core.progress import ProgressBoard, stderr_console
    from knowundo_bench.plugin.manager import get_plugins
    from knowundo_bench.records.lock import locked

    console = stderr_console()
    granted = Granted(trust_remote_code=trust_remote_code, key_envs=frozenset(allow_key_env or ()))
    try:
        with reported(), ExitStack() as held:
            if output.exists() and not output.is_dir():
                raise InputError(f"{output} is a file, not a folder", source="--output")
            try:
                output.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise InputError(f"cannot create {output} ({error.strerror})", source="--output") from None
            held.enter_context(locked(output, "build"))
            resolved = load_build_spec(spec, get_plugins())
            with ProgressBoard(console, enabled=progress) as board:
                card = run_build(resolved, output, board, granted=granted)
    except KeyboardInterrupt:
        console.print(Text(f"interrupted: rerun the same command to resume (state in {output / '.build'})"))
        raise typer.Exit(EXIT_INTERRUPTED) from None
    counts = ", ".join(f"{scope} {c['train']} train / {c['val']} val" for scope, c in card.counts.items())
    rate = card.self_check.pass_rate
    checked = f"; Self-Check pass rate {100 * rate:.1f}%" if rate is not None else ""
    dropped = sum(card.dropped.values())
    console.print(Text(f"built {len(card.instances)} instances: {counts}; {dropped} generated items dropped{checked}"))
    console.print(Text(f"domain: {output} (datacard: {output / 'DATACARD.md'})"))


@app.command(short_help="list methods, localizers and data/OOD/model sources")
def methods() -> None:
    """List every registered method, localizer, guard, data source, OOD retain source, model source, executor
    and generator."""
    from knowundo_bench.plugin.kinds import KINDS
    from knowundo_bench.plugin.manager import get_plugins
    from knowundo_bench.plugin.registry import MethodInfo

    with reported():
        plugins = get_plugins()
    console = Console()
    for kind in KINDS:
        table = Table(title=Text(kind.heading), show_lines=False, title_justify="left")
        for column in ("name", "description", "parameters (defaults)", "origin"):
            table.add_column(column, overflow="fold")
        for name, (info, plugin) in plugins.registries[kind.attribute].entries.items():
            fields = ", ".join(
                f"{field} (required)" if spec.is_required() else f"{field}={spec.default!r}"
                for field, spec in info.params.model_fields.items()
            )
            extra = ""
            if isinstance(info, MethodInfo) and info.default_localizer:
                extra += f" [default localizer: {info.default_localizer}]"
            if isinstance(info, MethodInfo) and info.retain == "out_of_distribution":
                extra += " [retain data: ood_retain]"
            table.add_row(Text(name), Text(info.description + extra), Text(fields or "–"), Text(plugins.origin(plugin)))
        console.print(table)


class View(str, Enum):
    scope = "scope"
    efficiency = "efficiency"
    robustness = "robustness"


def warn_skipped(what: str) -> None:
    """``warning: skipped WHAT`` on stderr: a damaged record or sample line left out."""
    sys.stderr.write(f"warning: skipped {what}\n")


def warn_skipped_records(results_dir: Path) -> None:
    """Say on stderr which result files were left out: damaged, or breaking the schema."""
    from knowundo_bench.records.files import schema_problems

    for problem in schema_problems(results_dir):
        warn_skipped(problem)


Directories = Annotated[
    list[Path], typer.Argument(metavar="DIR...", help="directories of result records (one run each)")
]


@app.command(short_help="print the leaderboard of results directories")
def leaderboard(
    results_dirs: Directories,
    format: Annotated[
        Format | None, typer.Option("--format", "-f", help="default: md, or a compact table on a terminal")
    ] = None,
    view: Annotated[
        View,
        typer.Option(
            "--view", help="scope metrics; Table 5's time/memory per step; robustness: each attack's recovery and MIA"
        ),
    ] = View.scope,
    per_seed: Annotated[bool, typer.Option("--per-seed", help="one row per unit instead of per method")] = False,
) -> None:
    """Print the leaderboard of one or more results directories: a row per method, its
    metrics averaged over seeds with 95% intervals (--per-seed: a row per unit)."""
    from knowundo_bench.leaderboard import leaderboard_rows, render
    from knowundo_bench.leaderboard.efficiency import efficiency_rows
    from knowundo_bench.leaderboard.terminal import show_leaderboard

    with reported():
        if view is View.efficiency:
            rows = [row for directory in results_dirs for row in efficiency_rows(directory)]
        else:
            rows = leaderboard_rows(results_dirs, per_seed=per_seed)
    for directory in results_dirs:
        warn_skipped_records(directory)
    if format is None and view is View.scope:
        show_leaderboard(rows, f"knowundo-bench leaderboard {' '.join(map(str, results_dirs))} --format md")
    else:
        sys.stdout.write(render(rows, (format or Format.md).value, view.value))


@app.command(short_help="compare runs side by side, with differences")
def compare(
    results_dirs: Directories,
    format: Annotated[Format, typer.Option("--format", "-f")] = Format.md,
) -> None:
    """Several runs in one table (a row per run and method); for two runs, each method's
    difference in Avg Success (second minus first) with its 95% interval (md and json)."""
    import json

    from knowundo_bench.leaderboard import leaderboard_rows, render
    from knowundo_bench.leaderboard.aggregate import method_differences
    from knowundo_bench.leaderboard.export import differences_markdown
    from knowundo_bench.records.files import json_safe

    with reported():
        if len(results_dirs) < 2:
            raise InputError("compare needs two or more results directories (leaderboard shows one)")
        rows = leaderboard_rows(results_dirs)
        differences = method_differences(*results_dirs) if len(results_dirs) == 2 else []
    for directory in results_dirs:
        warn_skipped_records(directory)
    if format is Format.json:
        payload = {"rows": rows, "differences": differences}
        sys.stdout.write(json.dumps(json_safe(payload), indent=2, allow_nan=False) + "\n")
        return
    sys.stdout.write(render(rows, format.value))
    if format is Format.md:
        sys.stdout.write(differences_markdown(differences))


@app.command(short_help="show a method's generations beside the vanilla model's")
def samples(
    results_dir: Annotated[Path, typer.Argument(metavar="DIR", help="a results directory run with --log-samples")],
    method: Annotated[str, typer.Option("--method", "-m", help="method label, or unit label (label@seed)")],
    scope: Annotated[str | None, typer.Option("--scope", help="unlearn or retention (default: both)")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="questions to show")] = 10,
    prefix: Annotated[str | None, typer.Option("--prefix", help="a prompt prefix's readings instead")] = None,
) -> None:
    """Print a method's logged generations beside the vanilla model's, question by question."""
    from knowundo_bench.leaderboard.samples import sample_table

    with reported():
        table = sample_table(
            results_dir,
            method,
            scope=scope,
            limit=limit,
            prefix=prefix,
            warn=warn_skipped,
        )
    Console(width=200).print(table)


ImageFormat = Enum("ImageFormat", {"png": "png", "pdf": "pdf", "svg": "svg"}, type=str)
FigureWidth = Enum("FigureWidth", {"single": "single", "double": "double"}, type=str)


@app.command(short_help="write plots of results directories")
def plot(
    results_dirs: Directories,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="default: the first directory's plots/")] = None,
    image_format: Annotated[ImageFormat, typer.Option("--format", "-f")] = ImageFormat.png,
    dpi: Annotated[int, typer.Option("--dpi", min=30, max=1200)] = 110,
    width: Annotated[
        FigureWidth, typer.Option("--width", help="a paper's single column (3.3 in) or both (6.9 in)")
    ] = FigureWidth.double,
) -> None:
    """Write plots of one or more results directories: success per method (error bars
    over seeds), training loss, curves (bands over seeds), prompt prefixes, general tasks."""
    from knowundo_bench.leaderboard.plots import plot_results

    with reported():
        written = plot_results(results_dirs, output, image_format=image_format.value, dpi=dpi, width=width.value)
    for directory in results_dirs:
        warn_skipped_records(directory)
    for path, series in written.items():
        sys.stdout.write(f"{path} ({series} series)\n")


ExportFormat = Enum("ExportFormat", {"hf_dataset": "hf-dataset", "csv": "csv", "json": "json"}, type=str)


@app.command(short_help="export the leaderboard: a Hugging Face dataset folder, or a per-seed CSV/JSON table")
def export(
    results_dirs: Directories,
    output: Annotated[Path, typer.Option("--output", "-o", help="hf-dataset: a new folder; csv/json: a file")],
    export_format: Annotated[ExportFormat, typer.Option("--format", "-f")] = ExportFormat.hf_dataset,
) -> None:
    """Export results: a dataset folder (per-seed and aggregated Parquet splits, a card), or the per-seed table."""
    from knowundo_bench.leaderboard.dataset import export_dataset, export_table

    with reported():
        if export_format is ExportFormat.hf_dataset:
            counts = export_dataset(results_dirs, output)
            summary = ", ".join(f"{split} {count} rows" for split, count in counts.items())
        else:
            summary = f"per_seed {export_table(results_dirs, output, export_format.value)} rows"
    for directory in results_dirs:
        warn_skipped_records(directory)
    sys.stdout.write(f"{output} ({summary})\n")


@app.command(short_help="write one self-contained HTML page of results: leaderboard, plots, efficiency, runs")
def report(
    results_dirs: Directories,
    output: Annotated[Path, typer.Option("--output", "-o", help="the HTML file to write")] = Path("report.html"),
) -> None:
    """Write one HTML page that opens offline: leaderboard, plots, efficiency view, each run's identity."""
    from knowundo_bench.leaderboard.html import write_report

    with reported():
        write_report(results_dirs, output)
    for directory in results_dirs:
        warn_skipped_records(directory)
    sys.stdout.write(f"{output}\n")
