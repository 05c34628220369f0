"""Figures of runs: accuracy against training time with the threshold lines, and the
TTMT curve (threshold against time to reach it) of several runs or systems side by side.

matplotlib's object API with the Agg canvas only: no display, no pyplot global
state, so it works on a headless server and inside tests.
"""

from __future__ import annotations

import io

from ttabench import UserError
from ttabench.divisions import metrics, scoring
from ttabench.divisions.results import atomic_write_bytes


def _literal(text: str) -> str:
    """Names and titles are shown as written: a '$' would start matplotlib's mathtext, and
    '$x^$' in a folder name would fail the whole figure."""
    return text.replace("$", r"\$")


def _fmt_s(v: float | None) -> str:
    return "undefined" if v is None else f"{v:.1f} s"


def figure(groups: list[tuple[str, list[scoring.Run]]], ts: list[float] | None, title: str | None = None):
    """A matplotlib Figure: one colour per group (an input: a run, or a folder of seeds)."""
    from matplotlib.figure import Figure

    groups = [(_literal(label), runs) for label, runs in groups]
    panels = 2 if ts else 1
    fig = Figure(figsize=(7.5 * panels, 5.2), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    ax = axes[0]
    colors = [f"C{i % 10}" for i in range(len(groups))]
    t_max = max((p[0] for _, runs in groups for r in runs for p in r.points), default=1.0) or 1.0

    # Threshold lines first, so the curves are drawn over them.
    if ts:
        for t in ts:
            ax.axhline(100 * t, color="0.6", lw=0.8, ls=":", zorder=1)
        label_every = max(1, len(ts) // 8)  # at most ~8 labels, always the first and the last
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

    for (label, runs), color in zip(groups, colors):
        one = len(runs) == 1
        for run in runs:
            pts = run.points
            if not pts:
                continue
            ax.plot(
                [p[0] for p in pts],
                [100 * p[1] for p in pts],
                color=color,
                lw=1.6 if one else 1.0,
                alpha=1 if one else 0.75,
                marker="o",
                ms=3,
                label=label,
                zorder=3,
            )
            label = None  # one legend entry per input
    ax.set_xlabel("training time (s, evaluation excluded)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Accuracy vs training time")
    ax.set_xlim(0, t_max * 1.03)
    ax.grid(True, alpha=0.25)
    _legend_below(ax)

    if ts:
        ax2 = axes[1]
        for (label, runs), color in zip(groups, colors):
            curves = [r.points for r in runs]
            for run in runs:
                pts = metrics.ttmt(run.points, ts)
                if pts:
                    ax2.plot(
                        [p[0] for p in pts],
                        [100 * p[1] for p in pts],
                        color=color,
                        lw=0.8 if len(runs) > 1 else 1.6,
                        alpha=0.45 if len(runs) > 1 else 1,
                        marker="o",
                        ms=3,
                        zorder=2,
                    )
            mean_tta, group_attmt = scoring.group_curves(curves, ts)
            reached = metrics.ttmt_points(ts, mean_tta)
            attmt = group_attmt[-1]
            n = f"{len(runs)} runs, " if len(runs) > 1 else ""
            legend = (
                f"{label} ({n}ATTMT {_fmt_s(attmt)}; {len(reached)}/{len(ts)} thresholds"
                + (" reached by all" if len(runs) > 1 else " reached")
                + ")"
            )
            if reached and len(runs) > 1:
                ax2.plot(
                    [p[0] for p in reached],
                    [100 * p[1] for p in reached],
                    color=color,
                    lw=2.2,
                    marker="s",
                    ms=4,
                    label=legend + ", mean",
                    zorder=3,
                )
            else:
                ax2.plot([], [], color=color, lw=1.6, marker="o", label=legend)
        ax2.set_xlabel("time to reach the threshold, TTA (s)")
        ax2.set_ylabel("threshold (%)")
        ax2.set_title(f"Time to multiple thresholds (TTMT), {100 * ts[0]:g}..{100 * ts[-1]:g}%")
        ax2.set_xlim(0, t_max * 1.03)
        ax2.set_ylim(100 * ts[0] - _pad(ts), 100 * ts[-1] + _pad(ts))
        ax2.grid(True, alpha=0.25)
        _legend_below(ax2)
    if title:
        fig.suptitle(_literal(title), fontsize=11)
    return fig


def _legend_below(ax) -> None:
    """Below the axes, where it can never hide a curve (none for runs without evaluations)."""
    if not ax.get_legend_handles_labels()[0]:
        return
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(0.0, -0.13), frameon=False)


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
