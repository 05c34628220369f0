"""The throughput benchmark's summary: per-mode statistics over repetitions, the table, and the
verdicts on the goals (speed-up over the baseline, fraction of the GEMM peak, harness overhead)."""

from __future__ import annotations

import statistics

from benchmarks.modes import MODES


def _spread(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def summarize(runs: list[dict], modes: list[str]) -> list[dict]:
    base = {r["seed"]: r["img_s"] for r in runs if r["mode"] == "baseline" and "error" not in r}
    rows = []
    for name in modes:
        ok = [r for r in runs if r["mode"] == name and "error" not in r]
        errors = [r["error"] for r in runs if r["mode"] == name and "error" in r]
        ratios = [r["img_s"] / base[r["seed"]] for r in ok if r["seed"] in base and base[r["seed"]]]
        rows.append(
            {
                "mode": name,
                "help": MODES[name].help,
                "reps": len(ok),
                "errors": errors,
                "img_s": _spread([r["img_s"] for r in ok]),
                "s_per_epoch": _spread([r["s_per_epoch"] for r in ok]),
                "accuracy": _spread([r["accuracy"] for r in ok]),
                "peak_rss_mib": _spread([r["peak_rss_mib"] for r in ok]),
                "warmup_s": _spread([r["warmup_s"] for r in ok]),
                "cpu_s_per_img": _spread([r["cpu_s_per_img"] for r in ok]),
                "speedup": _spread(ratios),
                "flop_s": _spread([r.get("flop_s") for r in ok]),
                "peak_flop_s": _spread([r["peak"]["flop_s"] for r in ok if r.get("peak")]),
                "peak_precision": next((r["peak"]["precision"] for r in ok if r.get("peak")), None),
                "fraction": _spread([r.get("fraction_of_peak") for r in ok]),
                "load1": _spread([r["load_before"][0] for r in ok] + [r["load_after"][0] for r in ok]),
            }
        )
    return rows


def _fmt(s, fmt: str, scale: float = 1.0, spread: bool = True) -> str:
    if s is None:
        return "-"
    med = format(s["median"] * scale, fmt)
    if not spread or s["n"] < 2:
        return med
    return f"{med} [{format(s['min'] * scale, fmt)}-{format(s['max'] * scale, fmt)}]"


def format_table(rows: list[dict]) -> str:
    header = (
        "mode",
        "images/s",
        "GFLOP/s",
        "GEMM peak GFLOP/s",
        "% of peak",
        "s/epoch",
        "test acc %",
        "peak RSS MiB",
        "warm-up s",
        "speed-up",
        "load1",
    )
    lines = []
    for r in rows:
        if not r["reps"]:
            lines.append(
                (r["mode"], "failed: " + (r["errors"][0] if r["errors"] else "?"), *[""] * (len(header) - 2))
            )
            continue
        lines.append(
            (
                r["mode"],
                _fmt(r["img_s"], ".0f"),
                _fmt(r["flop_s"], ".0f", 1e-9, spread=False),
                f"{_fmt(r['peak_flop_s'], '.0f', 1e-9)} {r['peak_precision'] or ''}".strip(),
                _fmt(r["fraction"], ".0f", 100),
                _fmt(r["s_per_epoch"], ".1f"),
                _fmt(r["accuracy"], ".1f", 100),
                _fmt(r["peak_rss_mib"], ".0f", spread=False),
                _fmt(r["warmup_s"], ".0f"),
                _fmt(r["speedup"], ".2f") + ("x" if r["speedup"] else ""),
                _fmt(r["load1"], ".1f"),
            )
        )
    widths = [max(len(str(x[i])) for x in [header, *lines]) for i in range(len(header))]
    out = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)) for line in lines]
    return "\n".join(out)


# Goals of issue 16 on the 2-core CPU: the fraction of the same-run GEMM peak, per precision.
FRACTION_GOALS = {"fp32": 0.85, "bf16": 0.70}


def fraction_verdicts(rows: list[dict]) -> list[str]:
    """One line per precision: ttabench's best mode in it against that precision's goal."""
    lines = []
    for precision, goal in FRACTION_GOALS.items():
        rows_p = [
            r
            for r in rows
            if r["fraction"] and not MODES[r["mode"]].baseline and MODES[r["mode"]].precision == precision
        ]
        if not rows_p:
            continue
        best = max(rows_p, key=lambda r: r["fraction"]["median"])
        got = best["fraction"]["median"]
        lines.append(
            f"goal {precision} >= {100 * goal:.0f} % of the {precision} GEMM peak: "
            f"{'reached' if got >= goal else 'not reached'} (best: {best['mode']} at {100 * got:.1f} %)"
        )
    return lines


def report(rows: list[dict], overhead: list[dict], runs: list[dict], overhead_mode: str) -> dict:
    """Print the table, the overhead and the goals; returns the overhead summary."""
    print()
    print(format_table(rows))
    print(
        "images/s: training only (evaluation excluded); [min-max] over reps; speed-up: median of "
        "per-rep ratios to the baseline; peak RSS: VmHWM of the training process"
    )
    flops = next((r["flops_per_image"] for r in runs if r.get("flops_per_image")), None)
    if flops:
        print(
            f"GFLOP/s: images/s x {flops / 1e9:.4f} GFLOP per trained image (torch.utils.flop_counter, "
            "forward + backward); GEMM peak: best of an N x N matmul in the mode's precision, measured "
            "in the same process after its training; % of peak: median of per-rep fractions"
        )
    for line in fraction_verdicts(rows):
        print(line)
    ov = {}
    for progress in ("plain", "rich"):
        s = _spread([o["fraction"] for o in overhead if o["progress"] == progress and "error" not in o])
        if s:
            ov[progress] = s
            print(
                f"harness overhead ({overhead_mode}, progress {progress}): (control_s + hooks_s) / "
                f"train_s = {_fmt(s, '.2f', 100)} % -> {'<=' if s['max'] <= 0.02 else '>'} 2 %"
            )
    best = max(
        (r for r in rows if r["speedup"] and r["mode"] != "baseline"),
        key=lambda r: r["speedup"]["median"],
        default=None,
    )
    if best:
        verdict = "reached" if best["speedup"]["median"] >= 5 else "not reached"
        print(
            f"goal >= 5x baseline images/s: {verdict} (best: {best['mode']} at "
            f"{best['speedup']['median']:.2f}x)"
        )
    return ov
