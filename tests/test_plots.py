"""`knowundo-bench plot` writes valid PNGs with one series per method run."""

from __future__ import annotations

from typer.testing import CliRunner

from knowundo_bench.cli import app
from knowundo_bench.records.files import write_record

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def scores(unlearn, retention):
    return {
        "unlearn": {"success": unlearn, "ppl": 2.0, "rouge_l": 1.0},
        "retention": {"success": retention, "ppl": 1.0, "rouge_l": 99.0},
        "avg_success": (unlearn + retention) / 2,
    }


def test_plot_command_writes_pngs_with_a_series_per_method(tmp_path):
    results = tmp_path / "results"
    write_record(results, "vanilla", {"method": "vanilla", "order": 0, "status": "ok", "metrics": scores(0, 100)})
    for order, (name, losses) in enumerate(
        {"ga": [-0.1, -2.0, float("-inf")], "ga_gd": [0.2, -0.5], "memflex": [0.1, -0.2, -0.3, -0.4]}.items(), start=1
    ):
        write_record(
            results,
            name,
            {
                "method": name,
                "order": order,
                "status": "ok",
                "metrics": scores(90, 50),
                "training": {"step_losses": losses},
            },
        )
    write_record(results, "broken", {"method": "broken", "order": 9, "status": "failed"})
    result = CliRunner().invoke(app, ["plot", str(results)])
    assert result.exit_code == 0, result.output
    lines = dict(line.rsplit(" (", 1) for line in result.stdout.strip().splitlines())
    success, loss = results / "plots" / "success.png", results / "plots" / "training_loss.png"
    assert lines[str(success)] == "4 series)"  # vanilla + three methods; the failed one is left out
    assert lines[str(loss)] == "3 series)"  # one loss curve per unlearning method
    for path in (success, loss):
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000


def test_plot_of_missing_directory_is_one_line(tmp_path):
    result = CliRunner().invoke(app, ["plot", str(tmp_path / "none")])
    assert result.exit_code == 2 and "results directory not found" in result.stderr


def test_log_axes_label_their_ticks_as_numbers(tmp_path, monkeypatch):
    """Names are never mathtext in these plots (text.parse_math is off), so a log axis
    must not use matplotlib's mathtext tick labels: they printed as "$\\mathdefault{10^{1}}$"."""
    from knowundo_bench.leaderboard import plots

    drawn = []
    import matplotlib.pyplot as plt

    plt.close("all")
    monkeypatch.setattr(plots, "_save", lambda fig, path, dpi: drawn.append((path.stem, fig)))
    results = tmp_path / "results"
    write_record(results, "vanilla", {"method": "vanilla", "order": 0, "status": "ok", "metrics": scores(0, 100)})
    training = {"step_losses": [0.5, -3.0, -40.0, -200.0]}
    body = {"method": "ga", "order": 1, "status": "ok", "metrics": scores(90, 50), "training": training}
    write_record(results, "ga", body)
    plots.plot_results(results, tmp_path / "plots")
    figures = dict(drawn)
    figure = figures["training_loss"]
    figure.canvas.draw()
    labels = [label.get_text() for label in figure.axes[0].get_yticklabels() if label.get_text()]
    assert len(labels) >= 3 and not any("$" in label or "mathdefault" in label for label in labels), labels
