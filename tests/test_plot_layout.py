"""Issue 31: every figure, at a paper's single and double column width, keeps its legend
off the axes and their tick labels, keeps bars, error bars and bands of success within
0-100, and gives each method one colour in every figure."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.patches import Rectangle

from knowundo_bench.leaderboard import plots
from knowundo_bench.leaderboard.figure_style import BUILT_IN_METHODS, PALETTE, method_colours
from knowundo_bench.records.files import write_record

METHODS = ("ga", "ga_gd", "ga_kl", "memflex", "npo")
SUCCESS = {  # per method, per seed: near 100 so that a plain t-interval runs past it
    "ga": (99.0, 100.0, 94.0),
    "ga_gd": (97.0, 100.0, 100.0),
    "ga_kl": (60.0, 75.0, 90.0),
    "memflex": (2.0, 0.0, 7.0),
    "npo": (50.0, 52.0, 49.0),
}


def scope(success: float) -> dict:
    return {"success": success, "ppl": 3.0 + success, "rouge_l": 100.0 - success}


def metrics(unlearn: float, retention: float) -> dict:
    return {
        "unlearn": scope(unlearn),
        "retention": scope(retention),
        "avg_success": (unlearn + retention) / 2,
        "prompt_prefixes": {
            "careful": {"unlearn": scope(max(0.0, unlearn - 5)), "retention": scope(retention), "avg_success": 50.0}
        },
        "general": {"mmlu": 40.0 + unlearn / 10, "arc_challenge": 30.0, "general_avg": 35.0},
    }


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Five methods at three seeds: losses, curves, a prompt prefix and general tasks."""
    folder = tmp_path_factory.mktemp("results")
    write_record(folder, "vanilla", {"method": "vanilla", "order": 0, "status": "ok", "metrics": metrics(0, 100)})
    for order, method in enumerate(METHODS, start=1):
        for seed, unlearn in enumerate(SUCCESS[method]):
            retention = 100.0 - unlearn / 3 if seed != 1 else 100.0
            curve = [
                {
                    "step": step,
                    "unlearn_success": unlearn * step / 4,
                    "retention_success": retention,
                    "unlearn_ppl": 2.0 + step,
                    "retention_ppl": 2.0,
                }
                for step in range(5)
            ]
            write_record(
                folder,
                f"{method}@{seed}",
                {
                    "method": method,
                    "unit": f"{method}@{seed}",
                    "seed": seed,
                    "order": order,
                    "status": "ok",
                    "metrics": metrics(unlearn, retention),
                    "training": {"step_losses": [-0.5 * (step + seed + 1) for step in range(6)]},
                    "curve": curve,
                },
            )
    return folder


def drawn_figures(results, tmp_path, monkeypatch, width):
    import matplotlib.pyplot as plt

    plt.close("all")  # _save, which closes them, is replaced
    drawn = {}
    monkeypatch.setattr(plots, "_save", lambda fig, path, dpi: drawn.__setitem__(path.stem, fig))
    plots.plot_results(results, tmp_path / width, width=width)
    return drawn


def legends(fig):
    return [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend() is not None)]


def overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def drawn_tick_labels(ax) -> list:
    """The tick labels matplotlib draws: with text, at a tick inside the view limits."""
    drawn = []
    for labels, position, limits in (
        (ax.get_xticklabels(), 0, ax.get_xlim()),
        (ax.get_yticklabels(), 1, ax.get_ylim()),
    ):
        low, high = sorted(limits)
        for label in labels:
            if label.get_visible() and label.get_text() and low <= label.get_position()[position] <= high:
                drawn.append(label)
    return drawn


def legend_clashes(fig) -> list[str]:
    """What a legend covers: an axes, one of its tick labels, or the figure's edge."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    clashes = []
    for legend in legends(fig):
        box = legend.get_window_extent(renderer)
        if not fig.bbox.contains(box.x0, box.y0) or not fig.bbox.contains(box.x1 - 1, box.y1 - 1):
            clashes.append("legend leaves the figure")
        for ax in fig.axes:  # its own axes included: a legend inside covers data
            if overlaps(box, ax.get_window_extent(renderer)):
                clashes.append(f"legend over the axes {ax.get_title()!r}")
            for label in drawn_tick_labels(ax):
                if overlaps(box, label.get_window_extent(renderer)):
                    clashes.append(f"legend over the tick label {label.get_text()!r}")
    return clashes


def texts_outside(fig) -> list[str]:
    """Titles and labels that run past the figure's edge (cut off in the file)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    texts = [*fig.texts, *(t for ax in fig.axes for t in (ax.title, ax.xaxis.label, ax.yaxis.label))]
    if fig._suptitle is not None:
        texts.append(fig._suptitle)
    outside = []
    for text in texts:
        if not text.get_text():
            continue
        box = text.get_window_extent(renderer)
        if box.x0 < -1 or box.x1 > fig.bbox.x1 + 1 or box.y0 < -1 or box.y1 > fig.bbox.y1 + 1:
            outside.append(text.get_text())
    return outside


def success_axes(fig):
    return [ax for ax in fig.axes if "succ" in (ax.get_ylabel() + ax.get_title()).lower()]


def heights_outside_percent(ax) -> list[float]:
    """Bar tops, error-bar ends and band edges of a success axis that leave 0-100."""
    found = []
    for patch in ax.patches:
        if isinstance(patch, Rectangle):
            found += [y for y in (patch.get_y(), patch.get_y() + patch.get_height()) if not -1e-9 <= y <= 100 + 1e-9]
    for collection in ax.collections:
        if isinstance(collection, LineCollection):
            ys = [y for segment in collection.get_segments() for _, y in segment]
        elif isinstance(collection, PolyCollection):
            ys = [y for path in collection.get_paths() for _, y in path.vertices]
        else:
            continue
        found += [y for y in ys if not -1e-9 <= y <= 100 + 1e-9]
    return found


@pytest.mark.parametrize("width", ["single", "double"])
def test_no_legend_covers_an_axes_or_a_tick_label_at_either_width(results, tmp_path, monkeypatch, width):
    figures = drawn_figures(results, tmp_path, monkeypatch, width)
    assert set(figures) == {"success", "training_loss", "curves", "prompt_prefixes", "general_tasks"}
    for name, fig in figures.items():
        assert legends(fig), name
        assert legend_clashes(fig) == [], name
        assert texts_outside(fig) == [], name
        inches = fig.get_size_inches()[0]
        assert inches == pytest.approx(3.3 if width == "single" else 6.9), name


@pytest.mark.parametrize(
    ("placement", "clash"),
    [
        ({"loc": "lower center"}, "legend over the axes"),  # over the bars
        ({"loc": "upper center", "bbox_to_anchor": (0.5, -0.04)}, "legend over the tick label"),  # over the names
    ],
)
def test_the_layout_check_fails_on_a_legend_moved_back_over_the_axis(results, tmp_path, monkeypatch, placement, clash):
    """The check above can fail: success.png's legend put back on the axes, inside it or
    just under it as the legend of issue 31's report was."""
    figures = drawn_figures(results, tmp_path, monkeypatch, "single")
    fig = figures["success"]
    fig.canvas.draw()  # the laid-out positions, then kept as they are
    fig.set_layout_engine("none")
    for legend in list(fig.legends):
        legend.remove()
    fig.axes[0].legend(ncol=3, frameon=False, **placement)
    assert any(found.startswith(clash) for found in legend_clashes(fig)), legend_clashes(fig)


def test_success_bars_error_bars_and_bands_stay_within_0_and_100(results, tmp_path, monkeypatch):
    figures = drawn_figures(results, tmp_path, monkeypatch, "double")
    checked = 0
    for name in ("success", "curves", "prompt_prefixes"):
        for ax in success_axes(figures[name]):
            assert heights_outside_percent(ax) == [], (name, ax.get_title() or ax.get_ylabel())
            checked += 1
    assert checked == 5  # success's axes, curves' two success panels, both prefix panels
    error_bars = [c for c in figures["success"].axes[0].collections if isinstance(c, LineCollection)]
    assert error_bars, "3 seeds: the success bars carry error bars"
    prefix_bars = [c for ax in figures["prompt_prefixes"].axes for c in ax.collections if isinstance(c, LineCollection)]
    assert prefix_bars, "3 seeds: the prompt-prefix bars carry error bars"


def test_a_method_has_one_colour_in_every_figure_and_run(results, tmp_path, monkeypatch):
    figures = drawn_figures(results, tmp_path, monkeypatch, "double")
    loss_lines = figures["training_loss"].axes[0].get_lines()
    colours = method_colours(METHODS)
    by_colour = {matplotlib.colors.to_hex(line.get_color()).upper() for line in loss_lines if len(line.get_xdata()) > 2}
    assert by_colour == {colours[m].upper() for m in METHODS}  # a colour per method, its seeds styled apart
    styles = {line.get_linestyle() for line in loss_lines if len(line.get_xdata()) > 2}
    assert len(styles) == 3
    curve_colours = {
        matplotlib.colors.to_hex(line.get_color()).upper() for line in figures["curves"].axes[0].get_lines()
    }
    assert curve_colours == by_colour
    # the same built-in method keeps its colour whatever else a run holds
    assert method_colours(["memflex"])["memflex"] == method_colours(["ga", "memflex", "x"])["memflex"]
    assert len(set(method_colours(BUILT_IN_METHODS).values())) == len(BUILT_IN_METHODS) <= len(PALETTE)
    own = method_colours(["ga", "mine", "theirs", "ours"])
    assert len(set(own.values())) == 4  # labels of one figure never share a colour while the palette lasts
