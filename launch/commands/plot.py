"""`ttabench plot`: accuracy against training time with the threshold lines, and the TTMT
curve (threshold against time to reach it) of several runs or systems side by side, as a PNG.

matplotlib's object API with the Agg canvas only: no display, no pyplot global
state, so it works on a headless server and inside tests.
"""

from __future__ import annotations

import io
import os
import textwrap

from ttabench import UserError
from ttabench.divisions import experiments, metrics, scoring
from ttabench.divisions.results import atomic_write_bytes
from ttabench.launch.commands.inputs import note_skipped, recorded_specs, thresholds_flag
from ttabench.launch.usage import add_command

Group = tuple[str, list[scoring.Run]]  # a legend label and its runs (an input: a run, or seeds)
LEGEND_LINE_IN = 0.2  # the height of one legend line (fontsize 8), in inches
LEGEND_WIDTH = 70  # characters of a legend line (a panel 7.5 in wide holds about 90 at fontsize 8)


def _literal(text: str) -> str:
    """Names and titles are shown as written: a '$' would start matplotlib's mathtext, and
    '$x^$' in a folder name would fail the whole figure."""
    return text.replace("$", r"\$")


def _fmt_s(v: float | None) -> str:
    return "undefined" if v is None else f"{v:.1f} s"


def figure(groups: list[Group], ts: list[float] | None, title: str | None = None):
    """A matplotlib Figure: one colour per group (an input: a run, or a folder of seeds)."""
    # Lazy: matplotlib takes a second to import, and only `plot` needs it.
    from matplotlib.figure import Figure

    # The legends sit below the axes, a long label wrapped: the figure grows with them, so that
    # the axes never collapse (matplotlib then warns and gives up the layout).
    groups = [(_literal(label), runs) for label, runs in groups]
    panels = 2 if ts else 1
    fig = Figure(figsize=(7.5 * panels, 5.2), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    colors = [f"C{i % 10}" for i in range(len(groups))]
    t_max = max((p[0] for _, runs in groups for r in runs for p in r.points), default=1.0) or 1.0
    _accuracy_panel(axes[0], groups, colors, ts, t_max)
    if ts:
        _ttmt_panel(axes[1], groups, colors, ts, t_max)
    if title:
        fig.suptitle(_literal(title), fontsize=11)
    lines = max(_legend_below(ax) for ax in axes)
    fig.set_size_inches(7.5 * panels, 5.2 + LEGEND_LINE_IN * lines)
    return fig


def _threshold_lines(ax, ts: list[float]) -> None:
    """Drawn first, so the curves are drawn over them; at most ~8 labels, always the ends."""
    for t in ts:
        ax.axhline(100 * t, color="0.6", lw=0.8, ls=":", zorder=1)
    label_every = max(1, len(ts) // 8)
    for i, t in enumerate(ts):
        if i % label_every == 0 or i == len(ts) - 1:
            ax.annotate(
                f"{100 * t:g}%",
                xy=(1.0, 100 * t),
                xycoords=("axes fraction", "data"),
                xytext=(3, 0),
                textcoords="offset points",
                va="center",
                fontsize=7,
                color="0.4",
            )


def _accuracy_panel(ax, groups: list[Group], colors, ts, t_max: float) -> None:
    if ts:
        _threshold_lines(ax, ts)
    for (label, runs), color in zip(groups, colors):
        one = len(runs) == 1
        for run in runs:
            pts = run.points
            if not pts:
                continue
            _line(ax, pts, color, lw=1.6 if one else 1.0, alpha=1 if one else 0.75, label=label, zorder=3)
            label = None  # one legend entry per input
    ax.set_xlabel("training time (s, evaluation excluded)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Accuracy vs training time")
    ax.set_xlim(0, t_max * 1.03)
    ax.grid(True, alpha=0.25)


def _line(ax, pts: list[tuple[float, float]], color, **style) -> None:
    """(seconds, accuracy fraction) points as a line of dots, accuracy in percent."""
    ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], color=color, marker="o", ms=3, **style)


def _ttmt_panel(ax, groups: list[Group], colors, ts: list[float], t_max: float) -> None:
    """Each run's TTMT curve, and for a folder of runs the group's mean drawn bold."""
    for (label, runs), color in zip(groups, colors):
        several = len(runs) > 1
        for run in runs:
            pts = metrics.ttmt(run.points, ts)
            if pts:
                _line(ax, pts, color, lw=0.8 if several else 1.6, alpha=0.45 if several else 1, zorder=2)
        mean_tta, group_attmt = scoring.group_curves([r.points for r in runs], ts)
        reached = metrics.ttmt_points(ts, mean_tta)
        n = f"{len(runs)} runs, " if several else ""
        legend = (
            f"{label} ({n}ATTMT {_fmt_s(group_attmt[-1])}; {len(reached)}/{len(ts)} thresholds"
            + (" reached by all" if several else " reached")
            + ")"
        )
        if reached and several:
            xs, ys = [p[0] for p in reached], [100 * p[1] for p in reached]
            ax.plot(xs, ys, color=color, lw=2.2, marker="s", ms=4, label=legend + ", mean", zorder=3)
        else:
            ax.plot([], [], color=color, lw=1.6, marker="o", label=legend)
    ax.set_xlabel("time to reach the threshold, TTA (s)")
    ax.set_ylabel("threshold (%)")
    ax.set_title(f"Time to multiple thresholds (TTMT), {100 * ts[0]:g}..{100 * ts[-1]:g}%")
    ax.set_xlim(0, t_max * 1.03)
    ax.set_ylim(100 * ts[0] - _pad(ts), 100 * ts[-1] + _pad(ts))
    ax.grid(True, alpha=0.25)


def _legend_below(ax) -> int:
    """Below the axes, where it can never hide a curve (none for runs without evaluations); long
    labels wrapped. Returns its number of text lines."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return 0
    labels = ["\n".join(textwrap.fill(part, LEGEND_WIDTH) for part in label.split("\n")) for label in labels]
    ax.legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(0.0, -0.13), frameon=False)
    return sum(label.count("\n") + 1 for label in labels)


def _pad(ts: list[float]) -> float:
    return max(1.0, 100 * (ts[-1] - ts[0]) * 0.08)


def save(fig, path: str, dpi: int = 130) -> None:
    """PNG written atomically (a viewer never sees half a file)."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi)
    except ValueError as e:  # matplotlib refusing what it was given to draw
        lines = str(e).strip().splitlines()
        raise UserError(f"cannot draw {path}: {lines[0] if lines else type(e).__name__}") from None
    atomic_write_bytes(path, buf.getvalue(), what="figure")


# --- the command ----------------------------------------------------------------------------


def _default_label(path: str, runs: list[scoring.Run]) -> str:
    if len(runs) > 1 or not runs[0].summary:
        return os.path.normpath(path)
    run = runs[0]
    d = experiments.describe_run(run)
    seed = f" seed {run.seed}" if run.seed is not None else ""
    workers = f" x{d['workers']}" if d.get("workers") not in (None, 1) else ""
    return f"{d['system']}{workers} {d['benchmark']}{seed}"


def _plot_title(runs: list[scoring.Run]) -> str | None:
    def values(key):
        return sorted({v for v in ((r.summary or {}).get(key) for r in runs) if isinstance(v, str)})

    benches, data = values("benchmark"), values("dataset")
    if not benches:
        return None
    title = ", ".join(benches)
    if data:
        title += " on " + ", ".join(data)
    if "synthetic" in data:
        title += " [synthetic data: not a benchmark result]"
    elif "cifar10-subset" in data:
        title += " [CIFAR-10 subset, not the full benchmark]"
    return title


def _check_output(args) -> None:
    if args.label and len(args.label) != len(args.inputs):
        raise UserError(f"--label given {len(args.label)} times for {len(args.inputs)} inputs")
    if not args.output.lower().endswith(".png"):
        raise UserError(f"-o must name a .png file, got {args.output}")
    out_dir = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(out_dir):
        raise UserError(f"output folder does not exist: {out_dir}")


def _cmd_plot(args) -> int:
    _check_output(args)
    groups, skipped = [], []
    for i, path in enumerate(args.inputs):
        runs = scoring.load_inputs([path], skipped)
        groups.append((args.label[i] if args.label else _default_label(path, runs), runs))
    note_skipped(skipped)
    labels = [g[0] for g in groups]
    if len(set(labels)) != len(labels):  # same system and seed twice: tell them apart
        groups = [(f"{label} [{i + 1}]", runs) for i, (label, runs) in enumerate(groups)]
    all_runs = [r for _, runs in groups for r in runs]
    ts = None
    if args.thresholds:
        ts = metrics.thresholds(*metrics.parse_thresholds(args.thresholds))
    else:
        specs, _ = recorded_specs(all_runs)  # an invalid one only costs the TTMT panel
        if len(specs) == 1:
            ts = metrics.thresholds(*metrics.parse_thresholds(specs.pop()))
    save(figure(groups, ts, title=args.title or _plot_title(all_runs)), args.output)
    print(f"wrote {args.output}" + ("" if ts else " (no thresholds: pass --thresholds for the TTMT panel)"))
    return 0


def add_commands(sub) -> None:
    p = add_command(
        sub,
        "plot",
        _cmd_plot,
        help="accuracy-vs-time and TTMT curves of runs, as a PNG",
        description="Left: test accuracy against training time with the threshold "
        "lines. Right: the TTMT curve (TTA of each threshold), the mean "
        "of each folder of runs drawn bold. One colour per input.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="run folder, curve.csv, or folder of runs")
    p.add_argument("-o", "--output", required=True, metavar="FILE.png")
    thresholds_flag(p, "threshold lines and TTMT")
    p.add_argument("--label", action="append", metavar="NAME", help="legend name, once per input")
    p.add_argument("--title", help="figure title")
