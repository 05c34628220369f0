"""The table and figure of a `benchmarks.netlab_scale` log: every point measured on a shaped
lab beside the model of launch/net/gloo.py, computed anew at each render.

    python -m benchmarks.netlab_scale --out results/predict --render
"""

from __future__ import annotations

from ttabench.launch.net import gloo

BOUND = 0.15  # the goal: every point within +-15 %
# The regime the model is validated in: the buffer (n bytes) takes at least this long at the link's rate
# (at 100 Mbit/s 1 and 4 MiB, at 20 Mbit/s 256 KiB and 1 MiB). Below it (64 KiB: 5 and 26 ms)
# the time of N processes' per-message software on 2 shared cores dominates, which a cluster
# with a CPU per host does not have: those points are measured and shown, counted apart.
TRANSFER_S = 0.05


def _software(b: dict) -> bool:
    return b.get("role") == "software"


def _model(row: dict, per_host: int, model: dict, latency: float, of=gloo.pattern_time):
    """gloo.pattern_time (or `of`: pattern_range) of a measured row, with the bench's model
    figures and `latency`."""
    at = (row["hosts"], per_host, model["rate_bytes_per_s"], latency, model["burst_bytes"], gloo.EFFICIENCY)
    return of(row["pattern"], row["size_bytes"], *at)


def _residual(measured: float, model: float, low: float, high: float) -> float:
    """predicted / measured - 1, where a race's range is predicted: against its nearer end
    (0 inside it)."""
    return (min(max(measured, low), high) if gloo.is_race(low, high) else model) / measured - 1


def rows_of(log: dict) -> list[dict]:
    """Every point measured on a shaped lab, with the model's time computed now (so --render
    follows the model): `predicted_s` the model; `software_s` the same pattern, size and lab
    timed at the software rate (None: not measured); `with_software_s` that plus the model's
    network part (latency 0 beyond what the shaped lab's model has over the software bench's:
    its --delay), None without it."""
    soft, soft_latency = {}, {}
    for b in filter(_software, log["benches"]):
        soft_latency[b["hosts"], b["workers_per_host"]] = b["model"]["latency_s"]
        for r in b["rows"]:
            soft[r["pattern"], r["size_bytes"], r["hosts"], b["workers_per_host"]] = r["measured_s"]
    out = []
    for b in log["benches"]:
        if _software(b):
            continue
        m, k = b["model"], b["workers_per_host"]
        for r in b["rows"]:
            model = _model(r, k, m, m["latency_s"])
            low, high = _model(r, k, m, m["latency_s"], gloo.pattern_range)
            sw = soft.get((r["pattern"], r["size_bytes"], r["hosts"], k))
            delay = max(0.0, m["latency_s"] - soft_latency.get((r["hosts"], k), m["latency_s"]))
            both = None if sw is None else sw + _model(r, k, m, delay)
            out.append(
                dict(
                    r,
                    predicted_s=model,
                    race_s=(low, high) if gloo.is_race(low, high) else None,
                    software_s=sw,
                    with_software_s=both,
                    rate=b["lab"]["rate"],
                    per_host=k,
                    transfer=r["size_bytes"] / m["rate_bytes_per_s"] >= TRANSFER_S,
                    residual=_residual(r["measured_s"], model, low, high),
                    with_software_residual=None if both is None else both / r["measured_s"] - 1,
                )
            )
    return out


def markdown(log: dict) -> str:
    rows = rows_of(log)
    within = sum(abs(r["residual"]) <= BOUND for r in rows)
    transfer = [r for r in rows if r["transfer"]]
    t_within = sum(abs(r["residual"]) <= BOUND for r in transfer)
    races = sum(r["race_s"] is not None for r in transfer)
    measured_sw = [r for r in rows if r["software_s"] is not None]
    sw_within = sum(abs(r["with_software_residual"]) <= BOUND for r in measured_sw)
    b0 = log["benches"]
    shaped = [b for b in b0 if not _software(b)]
    loads = [x for b in b0 for x in (b["loadavg_1_5_15_before"][0], b["loadavg_1_5_15_after"][0])]
    lines = [
        f"Measured on {log['cpu']} ({log['cpus']} CPUs; 1-minute load average "
        f"{min(loads):.1f}-{max(loads):.1f} over the benches, their own workers included), torch {log['torch']}, gloo over veth pairs "
        f"shaped by tc tbf (burst 64 KiB, queue {_queues(shaped)}) in network namespaces; "
        f"{len(shaped)} shaped lab benches and "
        f"{len(b0) - len(shaped)} at the software rate, "
        f"{sum(b['duration_s'] for b in b0) / 60:.1f} minutes. Median of {log['repeat']} rounds per point, "
        f"{_started(shaped)}; "
        f"predicted by launch/net/gloo.py with 100 us per message step; residual = predicted / measured - 1 "
        f"(negative: the model is faster than measured). Where a race decides between two ways "
        f"(gloo.py's RACES: a 2-rank all-gather, a broadcast's root; {races} of the transfer-regime points), "
        f"the model gives both (column race) and the residual is against the range's nearer end "
        f"(0 inside it). **{within} of {len(rows)} points within "
        f"+-{100 * BOUND:.0f} %: {t_within} of the {len(transfer)} whose buffer takes at least "
        f"{1e3 * TRANSFER_S:.0f} ms at the rate (regime: transfer), {within - t_within} of the "
        f"{len(rows) - len(transfer)} smaller (regime: per message, this machine's CPU; not validated).** "
        f"Beside it, not the prediction: the lab's software time (the same "
        f"pattern, size and lab timed at the software rate, where the link takes no time: this "
        f"machine's CPU, shared by all the lab's processes) and that plus the model's network part "
        f"(bucket, rate, TCP's payload share, schedule): {sw_within} of the {len(measured_sw)} points "
        f"with a software time within +-{100 * BOUND:.0f} % that way. Deviations and why: README.md "
        '(this folder), section "Scale: 2-16 hosts".',
        "",
        "| rate | pattern | size | regime | hosts x workers | measured ms | predicted ms | race ms | residual "
        "| within 15% | software ms | software + network ms | its residual | TCP retransmits |",
        "|---|---|---:|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    order = {p: i for i, p in enumerate(gloo.PATTERNS)}
    for r in sorted(
        rows, key=lambda r: (r["rate"], order[r["pattern"]], r["size_bytes"], r["per_host"], r["hosts"])
    ):
        lines.append(
            f"| {r['rate']} | {r['pattern']} | {_size(r['size_bytes'])} | "
            f"{'transfer' if r['transfer'] else 'per message'} | {r['hosts']} x {r['per_host']} | "
            f"{1e3 * r['measured_s']:.1f} | {1e3 * r['predicted_s']:.1f} | {_race(r['race_s'])} | "
            f"{100 * r['residual']:+.1f}% | "
            f"{'yes' if abs(r['residual']) <= BOUND else 'NO'} | {_ms(r['software_s'])} | "
            f"{_ms(r['with_software_s'])} | {_pct1(r['with_software_residual'])} | "
            f"{_plain(r.get('tcp_retransmits'))} |"
        )
    lines += [
        "",
        "Latency and bandwidth fitted to each lab's allreduce (sizes whose link bytes exceed twice the bucket):",
        "",
        "| rate | hosts x workers | fitted latency per step | fitted bandwidth | nominal x payload share "
        "| CPU busy | of it softirq | load before | TCP retransmits |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for b in shaped:
        f = b.get("allreduce_fit") or {}
        if "latency_s" in f:
            nominal = b["model"]["rate_bytes_per_s"] * b["model"]["efficiency"]
            lines.append(
                f"| {b['lab']['rate']} | {b['hosts']} x {b['workers_per_host']} | {1e6 * f['latency_s']:.0f} us | "
                f"{8e-6 * f['bandwidth_bytes_per_s']:.1f} Mbit/s | {8e-6 * nominal:.1f} Mbit/s | "
                f"{_pct(b.get('cpu_busy_share'))} | {_pct(b.get('cpu_softirq_share'))} | "
                f"{b['loadavg_1_5_15_before'][0]:.1f} | {sum(r.get('tcp_retransmits') or 0 for r in b['rows'])} |"
            )
    return "\n".join(lines) + "\n"


def _queues(benches: list[dict]) -> str:
    """tbf's queue of the benches (before benches recorded it: 50ms, the only one then)."""
    got = sorted({b["lab"].get("queue") or "50ms (not recorded)" for b in benches})
    return ", ".join(got) or "-"


def _started(benches: list[dict]) -> str:
    """How the rounds of the benches started (before benches recorded it: after a barrier)."""
    if all(b.get("start") == "clock" for b in benches):
        return "each round's ranks started together at an instant of this machine's clock"
    return "each round after a barrier" if not any(b.get("start") for b in benches) else "mixed starts"


def _race(span) -> str:
    return "-" if span is None else f"{1e3 * span[0]:.1f}-{1e3 * span[1]:.1f}"


def _ms(x) -> str:
    return "-" if x is None else f"{1e3 * x:.1f}"


def _pct1(x) -> str:
    return "-" if x is None else f"{100 * x:+.1f}%"


def _plain(x) -> str:
    return "-" if x is None else str(x)


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def _size(n: int) -> str:
    return f"{n // 1024**2} MiB" if n >= 1024**2 else f"{n // 1024} KiB"


def figure(log: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = rows_of(log)
    rates = sorted({r["rate"] for r in rows}, key=lambda x: -float(x.rstrip("mbit")))
    patterns = [p for p in gloo.PATTERNS if any(r["pattern"] == p for r in rows)]
    cols = len(patterns)
    fig, axes = plt.subplots(len(rates), cols, figsize=(4 * cols, 4 * len(rates)), squeeze=False)
    for i, rate in enumerate(rates):
        for j, pattern in enumerate(patterns):
            ax = axes[i][j]
            pts = [r for r in rows if r["rate"] == rate and r["pattern"] == pattern]
            for k, n in enumerate(sorted({r["size_bytes"] for r in pts})):
                flat = sorted(
                    (r for r in pts if r["size_bytes"] == n and r["per_host"] == 1), key=lambda r: r["hosts"]
                )
                color = f"C{k}"
                ax.plot(
                    [r["hosts"] for r in flat], [r["predicted_s"] for r in flat], "-", color=color, alpha=0.6
                )
                if any(r["race_s"] for r in flat):  # both ways of a race: a band
                    spans = [r["race_s"] or (r["predicted_s"],) * 2 for r in flat]
                    xs = [r["hosts"] for r in flat]
                    ax.fill_between(xs, [a for a, _ in spans], [b for _, b in spans], color=color, alpha=0.15)
                ax.plot(
                    [r["hosts"] for r in flat],
                    [r["measured_s"] for r in flat],
                    "o",
                    color=color,
                    label=_size(n),
                )
                for r in pts:
                    if r["size_bytes"] == n and r["per_host"] > 1:
                        w = r["hosts"] * r["per_host"]
                        ax.plot([w], [r["measured_s"]], "s", color=color, mfc="none")
                        ax.plot([w], [r["predicted_s"]], "x", color=color)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(f"{pattern}, tbf {rate}")
            ax.set_xlabel("workers (hosts; squares: 4 hosts x 2)")
            ax.set_ylabel("time (s)")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8, title="dots measured, lines predicted (bands: a race)", title_fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
