"""Command line: ``knowundo-bench run SPEC``, ``methods``, ``leaderboard DIR...``, ``compare DIR...``,
``samples DIR``, ``plot DIR...``."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from knowundo_bench.harness.errors import InputError
from knowundo_bench.harness.registry import MethodInfo

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
EXIT_BAD_INPUT = 2
EXIT_TARGET_MISSED = 3  # a vanilla model missed vanilla.target_accuracy (vanilla.require_target: true)


class Format(str, Enum):
    md = "md"
    csv = "csv"
    json = "json"


def fail(error: InputError) -> None:
    Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {error}", markup=True, highlight=False)
    raise typer.Exit(EXIT_BAD_INPUT)


@app.command()
def run(
    spec: Annotated[Path, typer.Argument(help="benchmark spec (YAML)")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="results directory")] = None,
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
) -> None:
    """Run a benchmark spec: vanilla model, every method, result records, leaderboard."""
    from dataclasses import replace

    from knowundo_bench.harness.plugin_manager import get_plugins
    from knowundo_bench.harness.progress import ProgressBoard
    from knowundo_bench.harness.runner import Runner, output_directory
    from knowundo_bench.harness.specs import load_spec
    from knowundo_bench.leaderboard import leaderboard_rows, render

    console = Console()
    try:
        plugins = get_plugins()
        resolved = load_spec(spec, plugins)
        if log_samples:
            evaluation = resolved.spec.eval.model_copy(update={"log_samples": True})
            resolved = replace(resolved, spec=resolved.spec.model_copy(update={"eval": evaluation}))
        directory = output_directory(resolved, output)
        with ProgressBoard(console, enabled=progress) as board:
            outcome = Runner(resolved, plugins, directory, board, force=force).run()
    except InputError as error:
        fail(error)
    sys.stdout.write(render(leaderboard_rows(outcome.output_dir), "md"))
    sys.stdout.write(f"results: {outcome.output_dir}\n")
    if outcome.failed:
        console.print(f"[red]failed methods: {', '.join(outcome.failed)}")
        raise typer.Exit(1)
    if outcome.target_missed and resolved.spec.vanilla.require_target:
        Console(stderr=True, soft_wrap=True).print(
            f"[bold red]error:[/] {', '.join(outcome.target_missed)} missed vanilla.target_accuracy "
            f"({resolved.spec.vanilla.target_accuracy}%): raise vanilla.epochs or lr, or set "
            "vanilla.require_target: false to accept it",
            highlight=False,
        )
        raise typer.Exit(EXIT_TARGET_MISSED)


@app.command()
def methods() -> None:
    """List every registered method, localizer, data source, OOD retain source and model source."""
    from knowundo_bench.harness.plugin_manager import get_plugins

    try:
        plugins = get_plugins()
    except InputError as error:
        fail(error)
    console = Console()
    for title, registry in (
        ("Methods", plugins.methods),
        ("Localizers", plugins.localizers),
        ("Data sources", plugins.data_sources),
        ("OOD retain sources (ood_retain.source)", plugins.ood_sources),
        ("Model sources", plugins.model_sources),
    ):
        table = Table(title=title, show_lines=False, title_justify="left")
        for column in ("name", "description", "parameters (defaults)", "origin"):
            table.add_column(column, overflow="fold")
        for name, (info, plugin) in registry.entries.items():
            fields = ", ".join(
                f"{field} (required)" if spec.is_required() else f"{field}={spec.default!r}"
                for field, spec in info.params.model_fields.items()
            )
            extra = ""
            if isinstance(info, MethodInfo) and info.default_localizer:
                extra += f" [default localizer: {info.default_localizer}]"
            if isinstance(info, MethodInfo) and info.retain == "out_of_distribution":
                extra += " [retain data: ood_retain]"
            table.add_row(name, Text(info.description + extra), Text(fields or "–"), plugins.origin(plugin))
        console.print(table)


class View(str, Enum):
    scope = "scope"
    efficiency = "efficiency"


def warn_skipped_records(results_dir: Path) -> None:
    """Say on stderr which result files were left out because they break the schema."""
    from knowundo_bench.harness.records.files import schema_problems

    for problem in schema_problems(results_dir):
        sys.stderr.write(f"warning: skipped {problem}\n")


Directories = Annotated[list[Path], typer.Argument(help="directories of result records (one run each)")]


@app.command()
def leaderboard(
    results_dirs: Directories,
    format: Annotated[Format, typer.Option("--format", "-f")] = Format.md,
    view: Annotated[View, typer.Option("--view", help="scope metrics, or Table 5's time/memory per step")] = View.scope,
    per_seed: Annotated[bool, typer.Option("--per-seed", help="one row per unit instead of per method")] = False,
) -> None:
    """Print the leaderboard of one or more results directories: a row per method, its
    metrics averaged over seeds with 95% intervals (``--per-seed``: a row per unit)."""
    from knowundo_bench.leaderboard import leaderboard_rows, render
    from knowundo_bench.leaderboard.aggregate import efficiency_rows

    try:
        if view is View.efficiency:
            rows = [row for directory in results_dirs for row in efficiency_rows(directory)]
        else:
            rows = leaderboard_rows(results_dirs, per_seed=per_seed)
    except InputError as error:
        fail(error)
    for directory in results_dirs:
        warn_skipped_records(directory)
    sys.stdout.write(render(rows, format.value, view.value))


@app.command()
def compare(
    results_dirs: Directories,
    format: Annotated[Format, typer.Option("--format", "-f")] = Format.md,
) -> None:
    """Several runs in one table (a row per run and method); for two runs, each method's
    difference in Avg Success (second minus first) with its 95% interval (md and json)."""
    import json

    from knowundo_bench.harness.records.files import json_safe
    from knowundo_bench.leaderboard import leaderboard_rows, render
    from knowundo_bench.leaderboard.aggregate import method_differences
    from knowundo_bench.leaderboard.export import differences_markdown

    try:
        if len(results_dirs) < 2:
            raise InputError("compare needs two or more results directories (leaderboard shows one)")
        rows = leaderboard_rows(results_dirs)
        differences = method_differences(*results_dirs) if len(results_dirs) == 2 else []
    except InputError as error:
        fail(error)
    for directory in results_dirs:
        warn_skipped_records(directory)
    if format is Format.json:
        payload = {"rows": rows, "differences": differences}
        sys.stdout.write(json.dumps(json_safe(payload), indent=2, allow_nan=False) + "\n")
        return
    sys.stdout.write(render(rows, format.value))
    if format is Format.md:
        sys.stdout.write(differences_markdown(differences))


@app.command()
def samples(
    results_dir: Annotated[Path, typer.Argument(help="a results directory run with --log-samples")],
    method: Annotated[str, typer.Option("--method", "-m", help="method label, or unit label (label@seed)")],
    scope: Annotated[str | None, typer.Option("--scope", help="unlearn or retention (default: both)")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="questions to show")] = 10,
    prefix: Annotated[str | None, typer.Option("--prefix", help="a prompt prefix's readings instead")] = None,
) -> None:
    """Print a method's logged generations beside the vanilla model's, question by question."""
    from knowundo_bench.leaderboard.samples import sample_table

    try:
        table = sample_table(results_dir, method, scope=scope, limit=limit, prefix=prefix)
    except InputError as error:
        fail(error)
    Console(width=200).print(table)


class ImageFormat(str, Enum):
    png = "png"
    pdf = "pdf"
    svg = "svg"


@app.command()
def plot(
    results_dirs: Directories,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="default: the first directory's plots/")] = None,
    image_format: Annotated[ImageFormat, typer.Option("--format", "-f")] = ImageFormat.png,
    dpi: Annotated[int, typer.Option("--dpi", min=30, max=1200)] = 110,
) -> None:
    """Write plots of one or more results directories: success per method (error bars
    over seeds), training loss, curves (bands over seeds), prompt prefixes, general tasks."""
    from knowundo_bench.leaderboard.plots import plot_results

    try:
        written = plot_results(results_dirs, output, image_format=image_format.value, dpi=dpi)
    except InputError as error:
        fail(error)
    for directory in results_dirs:
        warn_skipped_records(directory)
    for path, series in written.items():
        sys.stdout.write(f"{path} ({series} series)\n")


if __name__ == "__main__":
    app()
