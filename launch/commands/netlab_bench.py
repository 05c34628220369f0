"""`ttabench netlab bench`: communication patterns timed across a lab of N hosts, beside the model.

    ttabench netlab bench --hosts 4 --rate 100mbit                       # allreduce, 64 KiB .. 16 MiB
    ttabench netlab bench --hosts 8 --rate 20mbit --pattern allgather --sizes 64kb,1mb --json
    ttabench netlab bench --hosts 8 --pattern allreduce,broadcast        # several, one start-up
    ttabench netlab bench --hosts 4 --workers-per-host 2 --rate 100mbit --fit lab.json

Brings up its own lab (net/lab.py; named by --lab, default "bench": namespaces
ttabench-nlbench-*), starts one worker per host namespace (or --workers-per-host
W: W per namespace, ranks in host order), each a process of
launch/worker/collectives.py in one gloo group over the lab's veths, times each
pattern (--pattern, comma-separated) over the sizes and takes the lab down again: also after a failure, a
timeout (--timeout) or Ctrl-C / SIGTERM (exit 130), which stop the workers first.

Before each round the workers wait `--gap` (default 1.5 x the bucket's fill time,
burst / rate), so every round starts, as a training step's communication does
after its compute, with tbf's buckets full, and they start it together at one
instant of this machine's clock (collectives.py's `--start clock`: a barrier let
them go up to ~30 ms apart on shaped links; each round's `rank_start_s` shows
how far apart they started). Beside each median: the model of
net/gloo.py (the algorithm gloo runs, the nominal rate, the bucket, TCP's payload
share, latency --latency per message step plus the lab's --delay), and algbw /
busbw as nccl-tests define them, and where a race decides between two ways
(a 2-rank all-gather, a broadcast's root: gloo.py's RACES) both ends (column
race; `predicted_range_s` in --json). `--fit FILE.json` fits latency and bandwidth to
the medians (the same model, the bucket subtracted) and saves them as a network
profile (`ttabench run/predict --network FILE.json`).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import tempfile

from ttabench import UserError
from ttabench.divisions.results import read_json
from ttabench.launch import procs
from ttabench.launch.commands.bench import _ms, _size, config_of, measure_and_show
from ttabench.launch.net import cost, gloo, lab, link, topology
from ttabench.launch.record.tables import Column, Table
from ttabench.launch.usage import add_command, comma_list, json_flag

DEFAULT_SIZES = "64kb,256kb,1mb,4mb,16mb"
DEFAULT_LAB = "bench"
MASTER_PORT = 29500  # inside host 0's namespace: no other process can hold it
START = "clock"  # how each round starts (collectives.py): every rank is on this machine, one clock
ALGORITHM = {
    "broadcast": "binomial tree",
    "ring-exchange": "irecv from rank-1, then isend to rank+1",
    "neighbour-exchange": "irecv from both ring neighbours, then isend to both",
}
SOFTWARE_LATENCY = 100e-6  # per message step on an unloaded host (the 100mbit profile's alpha)


@dataclasses.dataclass
class NetBenchConfig:
    hosts: int = 2
    workers_per_host: int = 1
    rate: str = "100mbit"
    delay: str | None = None
    burst: str | None = None
    pattern: str = "allreduce"
    sizes: str = DEFAULT_SIZES
    repeat: int = 5
    warmup: int = 1
    gap: float | None = None
    latency: str | None = None
    timeout: float | None = None
    lab: str | None = None
    fit: str | None = None
    congestion_control: str = topology.DEFAULT_CONGESTION_CONTROL
    queue: str | None = None


def check(cfg: NetBenchConfig) -> tuple[topology.LabSpec, list[int]]:
    """Every flag checked before anything is made."""
    for pattern in patterns(cfg):
        gloo.check_pattern(pattern)
    if not 1 <= cfg.workers_per_host <= 8:
        raise UserError(f"--workers-per-host must be in 1..8, got {cfg.workers_per_host}")
    if cfg.repeat < 1 or cfg.warmup < 0:
        raise UserError("--repeat must be >= 1 and --warmup >= 0")
    if cfg.gap is not None and not 0 <= cfg.gap <= 10:
        raise UserError(f"--gap must be in 0..10 seconds, got {cfg.gap}")
    if cfg.timeout is not None and cfg.timeout <= 0:
        raise UserError(f"--timeout must be > 0 seconds, got {cfg.timeout}")
    if cfg.latency is not None:
        link.parse_time(cfg.latency)
    name = topology.lab_name(cfg.lab) or DEFAULT_LAB
    spec = topology.make_spec(
        cfg.hosts,
        cfg.rate,
        cfg.delay,
        cfg.burst,
        name=name,
        congestion_control=cfg.congestion_control,
        queue=cfg.queue,
    )
    if "neighbour-exchange" in patterns(cfg) and cfg.hosts * cfg.workers_per_host < 3:
        raise UserError(
            "--pattern neighbour-exchange needs at least 3 ranks (a ring of two distinct neighbours)"
        )
    sizes = link.parse_series(cfg.sizes, link.parse_size, "--sizes")
    if cfg.fit is not None:  # refused now, not after the whole bench
        if len(patterns(cfg)) > 1:
            raise UserError("--fit fits one pattern: give one --pattern")
        _fit_sizes(
            patterns(cfg)[0], sizes, spec.hosts, cfg.workers_per_host, spec.burst_bytes, gloo.EFFICIENCY
        )
    return spec, sizes


def _fit_sizes(pattern: str, sizes, hosts: int, k: int, burst: int, eff: float) -> dict:
    """{size: link bytes on the wire} of the sizes --fit uses: link bytes above twice the bucket."""
    if pattern == "allgather" and hosts * k == 2:
        raise UserError(
            "--fit of allgather needs at least 3 workers: at 2 it is not the ring's alpha + bytes / B "
            "(gloo's order of sends, launch/net/gloo.py)"
        )
    wire = {n: gloo.link_bytes(pattern, n, hosts, k) / eff for n in sizes}
    used = {n: x for n, x in wire.items() if x > 2 * burst}
    if len(set(used.values())) < 2:
        raise UserError(
            f"--fit needs at least 2 sizes whose link bytes exceed twice the bucket ({2 * burst} B)"
        )
    return used


def patterns(cfg: NetBenchConfig) -> list[str]:
    return comma_list(cfg.pattern) or [""]


def model_latency(cfg: NetBenchConfig, spec: topology.LabSpec) -> float:
    """alpha per message step: --latency (default the software's) plus the lab's one-way delay."""
    soft = link.parse_time(cfg.latency) if cfg.latency is not None else SOFTWARE_LATENCY
    return soft + (spec.delay_s or 0.0)


def predicted(cfg: NetBenchConfig, spec: topology.LabSpec, nbytes: int, pattern: str, of=gloo.pattern_time):
    """The model's time (or `of`: gloo.pattern_range, a race's two ends)."""
    return of(
        pattern,
        nbytes,
        spec.hosts,
        cfg.workers_per_host,
        spec.rate_bytes_per_s,
        model_latency(cfg, spec),
        spec.burst_bytes,
        gloo.EFFICIENCY,
    )


def gap_s(cfg: NetBenchConfig, spec: topology.LabSpec) -> float:
    return cfg.gap if cfg.gap is not None else 1.5 * spec.burst_bytes / spec.rate_bytes_per_s


def time_limit(cfg: NetBenchConfig, spec: topology.LabSpec, sizes: list[int]) -> float:
    """--timeout, else generous: start-up, then 3x every round's model and gap."""
    if cfg.timeout is not None:
        return cfg.timeout
    p = spec.hosts * cfg.workers_per_host
    rounds = cfg.warmup + cfg.repeat
    per_round = [
        3 * predicted(cfg, spec, n, pattern) + gap_s(cfg, spec) + 0.05 * p
        for n in sizes
        for pattern in patterns(cfg)
    ]
    return 60 + 5 * p + rounds * sum(per_round)


# -- running it ----------------------------------------------------------------------


def worker_commands(state: dict, cfg: NetBenchConfig, sizes: list[int], out: str, spec) -> list:
    """(argv, keywords for procs.start) of every rank: W per host namespace, in host order."""
    k = cfg.workers_per_host
    p = state["hosts"] * k
    slowest = max(predicted(cfg, spec, n, pat) for n in sizes for pat in patterns(cfg))
    py = [sys.executable, "-m", "ttabench.launch.worker.collectives"]
    flags = [
        *("--pattern", ",".join(patterns(cfg)), "--sizes", ",".join(map(str, sizes))),
        *("--warmup", str(cfg.warmup), "--repeat", str(cfg.repeat), "--gap", repr(gap_s(cfg, spec))),
        *("--start", START, "--collective-timeout", str(int(max(60, 10 * slowest))), "--out", out),
    ]
    commands = []
    for rank in range(p):
        node = state["nodes"][rank // k]
        env = {
            "MASTER_ADDR": state["nodes"][0]["address"],
            "MASTER_PORT": str(MASTER_PORT),
            "RANK": str(rank),
            "WORLD_SIZE": str(p),
            "LOCAL_RANK": str(rank % k),
            "LOCAL_WORLD_SIZE": str(k),
            "GLOO_SOCKET_IFNAME": node["interface"],
            "OMP_NUM_THREADS": "1",
        }
        commands.append(
            (["ip", "netns", "exec", node["namespace"], *py, *flags], {"env": env, "capture": True})
        )
    return commands


def run(cfg: NetBenchConfig) -> dict:
    """Lab up, the workers, lab down (whatever happens); the measured rows beside the model."""
    spec, sizes = check(cfg)
    lab.require_root()
    path = lab.state_path(spec.name)
    load_before = os.getloadavg()
    with procs.interruptible(), tempfile.TemporaryDirectory(prefix="ttabench-netbench-") as tmp:
        out = os.path.join(tmp, "rows.json")
        made = False  # a lab that was up already (up refuses) is another command's: never down it
        try:
            state = lab.up(spec, path=path)  # on a failure part-way, up removes what it made
            made = True
            _run_workers(state, cfg, sizes, out, spec)
            measured = read_json(out)
        except procs.Interrupted:
            raise KeyboardInterrupt from None  # the CLI's one line and exit code 130
        finally:
            if made:
                _down_regardless(path)
    return _result(cfg, spec, state, measured, load_before)


def _run_workers(state, cfg, sizes, out, spec) -> None:
    limit = time_limit(cfg, spec, sizes)
    children, result = procs.run_all(worker_commands(state, cfg, sizes, out, spec), timeout=limit)
    if result.interrupted:
        raise procs.Interrupted(result.interrupted)
    if result.timed_out:
        raise UserError(f"netlab bench: timed out after {limit:.0f} s (--timeout); stopped the workers")
    if result.failed is not None:
        why = lab.last_line(children[result.failed].stderr)
        raise UserError(f"netlab bench: rank {result.failed} exited with code {result.code}: {why}")


def _race(row: dict) -> str:
    """Both ends where a race decides the time (gloo.RACES), else -."""
    low, high = row.get("predicted_range_s") or (0.0, 0.0)
    return f"{1e3 * low:.1f}-{1e3 * high:.1f} ms" if gloo.is_race(low, high) else "-"


def _down_regardless(path: str) -> None:
    """Take the lab down; a second Ctrl-C or SIGTERM meanwhile must not leave half of it."""
    held = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        lab.down(path=path)
    finally:
        for s, old in held.items():
            signal.signal(s, old)


def _result(cfg, spec, state, measured, load_before) -> dict:
    k, p = cfg.workers_per_host, spec.hosts * cfg.workers_per_host
    rows = []
    for r in measured["rows"]:
        model = predicted(cfg, spec, r["bytes"], r["pattern"])
        algbw = gloo.result_bytes(r["pattern"], r["bytes"], p) / r["median_s"] / 1e9
        rows.append(
            {
                "hosts": spec.hosts,
                "workers": p,
                "pattern": r["pattern"],
                "size_bytes": r["bytes"],
                "measured_s": r["median_s"],
                "predicted_s": model,
                "predicted_range_s": list(predicted(cfg, spec, r["bytes"], r["pattern"], gloo.pattern_range)),
                "ratio": r["median_s"] / model if model > 0 else None,
                "algbw_GBps": algbw,
                "busbw_GBps": algbw * gloo.bus_factor(r["pattern"], p),
                "min_s": r["min_s"],
                "max_s": r["max_s"],
                "times_s": r["times_s"],
                "rank_start_s": r.get("rank_start_s"),
                "rank_done_s": r.get("rank_done_s"),
                "tcp_retransmits": r.get("tcp_retransmits"),
            }
        )
    return {
        "hosts": spec.hosts,
        "workers_per_host": k,
        "workers": p,
        "pattern": cfg.pattern,
        "lab": lab.shaping_of(state),
        "model": {
            "algorithm": {pat: "gloo " + ALGORITHM.get(pat, "ring") for pat in patterns(cfg)},
            "rate_bytes_per_s": spec.rate_bytes_per_s,
            "latency_s": model_latency(cfg, spec),
            "burst_bytes": spec.burst_bytes,
            "efficiency": gloo.EFFICIENCY,
        },
        "repeat": cfg.repeat,
        "warmup": cfg.warmup,
        "gap_s": gap_s(cfg, spec),
        "start": START,
        "loadavg_before": list(load_before),
        "loadavg_after": list(os.getloadavg()),
        "cpus": os.cpu_count(),
        "rows": rows,
    }


# -- fitting and showing -------------------------------------------------------------


def fit(result: dict, path: str) -> dict:
    """alpha and B of the pattern's model fitted to the medians (least squares, the bucket
    subtracted: only sizes whose link bytes exceed twice the bucket), saved as a profile."""
    pattern, p, hosts = result["pattern"], result["workers"], result["hosts"]
    if "," in pattern:
        raise UserError("--fit fits one pattern: give one --pattern")
    burst, eff = result["model"]["burst_bytes"], result["model"]["efficiency"]
    sizes = [r["size_bytes"] for r in result["rows"]]
    used = _fit_sizes(pattern, sizes, hosts, result["workers_per_host"], burst, eff)
    # t = h alpha + (x - burst) / B where the link bytes x exceed the bucket well
    pts = [
        (used[r["size_bytes"]] - burst, r["measured_s"]) for r in result["rows"] if r["size_bytes"] in used
    ]
    a, b = cost.fit_line(pts)
    bandwidth = 1 / b
    alpha = a / gloo.hops(pattern, p)
    name = os.path.splitext(os.path.basename(path))[0]
    extra = {"fitted_from": {k: result[k] for k in ("hosts", "workers", "pattern", "lab", "rows")}}
    link.save_profile(path, link.Link(name, bandwidth, alpha), extra)
    return {"file": path, "latency_s": alpha, "bandwidth_bytes_per_s": bandwidth}


def table(result: dict) -> Table:
    lab_ = result["lab"]
    title = (
        f"{result['pattern']}, {result['hosts']} hosts x {result['workers_per_host']} workers, "
        f"tbf {lab_['rate']} (burst {lab_['burst_bytes']} B, queue {lab_.get('queue') or 'not recorded'}), "
        f"delay {lab_['delay'] or 'none'}, "
        f"TCP {lab_.get('congestion_control') or 'not recorded'}, gloo"
    )
    columns = [
        Column("pattern", "pattern", left=True),
        Column("size", "size_bytes", lambda r: _size(r["size_bytes"])),
        Column("measured", "measured_s", lambda r: _ms(r["measured_s"])),
        Column("min", "min_s", lambda r: _ms(r["min_s"])),
        Column("max", "max_s", lambda r: _ms(r["max_s"])),
        Column("predicted", "predicted_s", lambda r: _ms(r["predicted_s"])),
        Column("measured/predicted", "ratio", lambda r: "-" if r["ratio"] is None else f"{r['ratio']:.3f}"),
        Column("race", "predicted_range_s", _race),
        Column("algbw GB/s", "algbw_GBps", lambda r: f"{r['algbw_GBps']:.5f}"),
        Column("busbw GB/s", "busbw_GBps", lambda r: f"{r['busbw_GBps']:.5f}"),
    ]
    m = result["model"]
    notes = [
        f"model: {'; '.join(f'{k}: {v}' for k, v in m['algorithm'].items())}; rate {link.format_rate(m['rate_bytes_per_s'])}, latency "
        f"{1e6 * m['latency_s']:g} us per step, burst {m['burst_bytes']} B, payload share {m['efficiency']:.3f}; "
        f"load average {result['loadavg_before'][0]:.2f} -> {result['loadavg_after'][0]:.2f} on {result['cpus']} CPUs"
    ]
    f = result.get("fit")
    if f:
        notes.append(
            f"fit: latency {1e6 * f['latency_s']:.1f} us, bandwidth "
            f"{link.format_rate(f['bandwidth_bytes_per_s'])}; profile saved to {f['file']}"
        )
    return Table(columns, result["rows"], title=title, notes=notes)


def _cmd(args) -> int:
    cfg = config_of(args, NetBenchConfig)
    check(cfg)
    return measure_and_show(args, cfg, run, fit, table)


def add_command_to(nsub, add_lab_flag, add_tcp_flags) -> None:
    d = NetBenchConfig()
    b = add_command(nsub, "bench", _cmd, help="time a collective across a lab of N hosts, beside the model")
    b.add_argument("--hosts", type=int, default=d.hosts, help="host namespaces, one worker each (2..32)")
    b.add_argument("--workers-per-host", type=int, default=d.workers_per_host, help="workers per host (1..8)")
    b.add_argument("--rate", default=d.rate, help="tbf rate of every host link, tc units (default 100mbit)")
    b.add_argument("--delay", help="one-way netem delay (needs sch_netem), e.g. 1ms")
    b.add_argument("--burst", help="tbf bucket (default max(64kb, 2 ms at RATE))")
    add_tcp_flags(b)
    b.add_argument(
        "--pattern",
        default=d.pattern,
        help=f"{', '.join(gloo.PATTERNS)}, or several, comma-separated (default allreduce)",
    )
    b.add_argument(
        "--sizes", default=d.sizes, help=f"bytes per rank, tc units, or FROM:TO:xK (default {d.sizes})"
    )
    b.add_argument("--repeat", type=int, default=d.repeat, help="timed rounds per size (default 5)")
    b.add_argument("--warmup", type=int, default=d.warmup, help="untimed rounds per size (default 1)")
    b.add_argument("--gap", type=float, help="seconds idle before each round (default 1.5 x burst/rate)")
    b.add_argument("--latency", help="the model's latency per message step, besides --delay (default 100us)")
    b.add_argument("--timeout", type=float, help="stop after this many seconds (default from the model)")
    add_lab_flag(b)
    json_flag(b)
    b.add_argument(
        "--fit", metavar="FILE.json", help="fit latency and bandwidth; save them as a network profile"
    )
    b.set_defaults(lab=None)
