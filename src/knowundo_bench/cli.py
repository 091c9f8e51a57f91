"""Command line: ``knowundo-bench run SPEC``, ``methods``, ``leaderboard DIR``."""

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
    force: Annotated[bool, typer.Option("--force", help="recompute results a previous run finished")] = False,
) -> None:
    """Run a benchmark spec: vanilla model, every method, result records, leaderboard."""
    from knowundo_bench.harness.plugin_manager import get_plugins
    from knowundo_bench.harness.progress import ProgressBoard
    from knowundo_bench.harness.runner import Runner, output_directory
    from knowundo_bench.harness.specs import load_spec
    from knowundo_bench.leaderboard import leaderboard_rows, render

    console = Console()
    try:
        plugins = get_plugins()
        resolved = load_spec(spec, plugins)
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


@app.command()
def leaderboard(
    results_dir: Annotated[Path, typer.Argument(help="directory of result records")],
    format: Annotated[Format, typer.Option("--format", "-f")] = Format.md,
    view: Annotated[View, typer.Option("--view", help="scope metrics, or Table 5's time/memory per step")] = View.scope,
) -> None:
    """Print the leaderboard of a results directory."""
    from knowundo_bench.leaderboard import leaderboard_rows, render
    from knowundo_bench.leaderboard.aggregate import efficiency_rows

    rows_of = {View.scope: leaderboard_rows, View.efficiency: efficiency_rows}
    try:
        rows = rows_of[view](results_dir)
    except InputError as error:
        fail(error)
    warn_skipped_records(results_dir)
    sys.stdout.write(render(rows, format.value, view.value))


@app.command()
def plot(
    results_dir: Annotated[Path, typer.Argument(help="directory of result records")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="default: RESULTS_DIR/plots")] = None,
) -> None:
    """Write PNG plots of a results directory (success per method, training loss per step)."""
    from knowundo_bench.leaderboard.plots import plot_results

    try:
        written = plot_results(results_dir, output)
    except InputError as error:
        fail(error)
    warn_skipped_records(results_dir)
    for path, series in written.items():
        sys.stdout.write(f"{path} ({series} series)\n")


if __name__ == "__main__":
    app()
