"""The communication model against measurements at 2-16 hosts on tbf-shaped links.

    python -m benchmarks.netlab_scale --out results/predict                 # as root, ~16 min
    python -m benchmarks.netlab_scale --out /tmp/s --hosts 2,4 --rates 100mbit --sizes-100mbit 1mb
    python -m benchmarks.netlab_scale --out results/predict --render        # tables and figure again
    python -m benchmarks.netlab_scale --out results/predict --append --patterns ring-exchange  # one anew

Runs from the repository root. For each lab (2, 4, 8, 16 hosts with one
worker each, and 4 hosts x 2 workers) and each rate (100mbit, 20mbit) one
`ttabench netlab bench` times every pattern (allreduce, allgather, broadcast,
ring-exchange, and neighbour-exchange from 3 workers; `--patterns` chooses,
`--append` keeps OUT's JSON but the rows of the patterns measured now) over
the rate's sizes (--repeat 7 after 1 warm-up round, each
round after the buckets filled, the ranks started together on this
machine's clock; 7 rounds: a point whose rounds end one of two ways, e.g.
which of two transfers a link serves first, gets the median of the
commoner way more often than with 3), beside the model of launch/net/gloo.py with
its defaults (nominal rate, 100 us per message step, the bucket, TCP's
payload share).

The lab's own software time. N processes on this machine's 2 cores spend
time per message (gloo, TCP, the veths and the bridge forwarding in softirq)
that a cluster, a CPU per host, would not have, and that dominates small
messages (64 KiB: measured up to 10x the model's 100 us per step). So each
lab is first timed with the same patterns and sizes (those of both rates) at
`--software-rate` (default 10gbit: the bucket, 2 ms at that rate, holds every
size, the link takes no time). Beside each shaped point's prediction (the
model alone, as `ttabench predict` uses it) the table has that software
time and the software time plus the model's network part (the bucket, the
rate, TCP's payload share, the schedule: the model at latency 0 beyond the
lab's --delay), which tells the points where the lab measures its own CPU
rather than the link. It is not the prediction: the CPU's work overlaps the
wait for a slow link at large sizes, so adding it overcounts there (the
measurement in results/predict/README.md). `--software-rate none` skips it.
Every bench is recorded as soon as it ends in
OUT/scale-validation.json with its command, duration, the load average before
and after and the CPU; then OUT/scale-validation.md (the table, residual =
predicted / measured - 1, as in validation.md; where a race decides, against
the nearer end of the model's range) and OUT/scale-validation.png (time
against hosts per pattern and rate: measured dots, predicted lines, a race's
range as a band), made by benchmarks/scale_table.py. Each lab also yields the
latency and bandwidth `--fit` would give for its allreduce (from the sizes
whose link bytes exceed twice the bucket), which shows how the per-step time of
this machine's software grows with the processes sharing its cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from benchmarks.scale_table import figure, markdown
from ttabench.divisions.results import atomic_write_json, atomic_write_text, read_json
from ttabench.launch import system
from ttabench.launch.commands import netlab_bench
from ttabench.launch.net import gloo
from ttabench.launch.usage import comma_list

SIZES = {"100mbit": "64kb,1mb,4mb", "20mbit": "64kb,256kb,1mb"}
SOFTWARE_RATE = "10gbit"  # unshaped in effect: what a lab's patterns cost its CPU alone
LABS = [(2, 1), (4, 1), (8, 1), (16, 1), (4, 2)]


def lab_patterns(args, hosts: int, per_host: int) -> list[str]:
    """--patterns that run on this lab (neighbour-exchange needs 3 workers)."""
    return [p for p in comma_list(args.patterns) if p != "neighbour-exchange" or hosts * per_host >= 3]


def _labs(text: str) -> list[tuple[int, int]]:
    """--hosts HOSTSxWORKERS,... (or HOSTS) -> [(hosts, workers per host)]"""
    return [(int(h), int(k or 1)) for h, _, k in (lab.partition("x") for lab in comma_list(text))]


def _sizes(args, rate: str) -> str:
    if rate == args.software_rate:  # every size a shaped lab times
        every = [n for r in comma_list(args.rates) for n in comma_list(_sizes(args, r))]
        return ",".join(dict.fromkeys(every))
    return getattr(args, f"sizes_{rate}", None) or SIZES.get(rate, "1mb")


def bench(args, rate: str, hosts: int, per_host: int) -> dict:
    sizes = _sizes(args, rate)
    patterns = lab_patterns(args, hosts, per_host)
    cmd = [
        *(sys.executable, "-m", "ttabench", "netlab", "bench"),
        *("--hosts", str(hosts), "--workers-per-host", str(per_host), "--rate", rate),
        *("--pattern", ",".join(patterns), "--sizes", sizes),
        *("--repeat", str(args.repeat), "--warmup", "1", "--lab", "scale", "--json"),
        *(("--queue", args.queue) if args.queue else ()),
    ]
    load, t0, cpu0 = os.getloadavg(), time.monotonic(), _cpu_times()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    cpu = [b - a for a, b in zip(cpu0, _cpu_times())]
    if proc.returncode != 0:
        raise SystemExit(f"netlab_scale: {' '.join(cmd[2:])} failed: {proc.stderr.strip()[-400:]}")
    result = json.loads(proc.stdout)
    result["command"] = "ttabench " + " ".join(cmd[3:])
    result["duration_s"] = time.monotonic() - t0
    result["loadavg_1_5_15_before"] = list(load)
    result["loadavg_1_5_15_after"] = list(os.getloadavg())
    result["allreduce_fit"] = _fit(result)
    # the whole machine's CPU while the bench ran (others' work included): busy share, and
    # the share in softirq, where the veths, the bridge and tbf forward every packet
    result["cpu_busy_share"] = 1 - (cpu[3] + cpu[4]) / sum(cpu)
    result["cpu_softirq_share"] = cpu[6] / sum(cpu)
    return result


def _cpu_times() -> list[int]:
    """/proc/stat's first line: user nice system idle iowait irq softirq steal (clock ticks)."""
    with open("/proc/stat", encoding="ascii") as f:
        return [int(x) for x in f.readline().split()[1:9]]


def _fit(result: dict) -> dict | None:
    """What `--fit` gives for the lab's allreduce (None: too few sizes above the bucket)."""
    rows = [r for r in result["rows"] if r["pattern"] == "allreduce"]
    try:
        got = netlab_bench.fit(dict(result, pattern="allreduce", rows=rows), os.devnull)
    except Exception as e:  # noqa: BLE001  -- recorded, not fatal: the table stands without it
        return {"error": str(e)}
    got.pop("file")  # the profile is thrown away (os.devnull): only the fitted figures are kept
    return got


def keep_others(log: dict, patterns: list[str], labs: set, repeat: int) -> dict:
    """`--append`: the log without the rows of `patterns` in `labs` ((rate, hosts, workers per
    host), measured anew), nor benches left empty, nor an allreduce fit whose rows go."""
    if log["repeat"] != repeat:
        raise SystemExit(f"netlab_scale: --append needs the log's --repeat {log['repeat']}, got {repeat}")
    if any(b.get("start") != "clock" for b in log["benches"]):
        raise SystemExit("netlab_scale: --append needs a log whose rounds all started together (clock start)")
    for b in log["benches"]:
        if (b["lab"]["rate"], b["hosts"], b["workers_per_host"]) not in labs:
            continue
        b["rows"] = [r for r in b["rows"] if r["pattern"] not in patterns]
        if "allreduce" in patterns:
            b.pop("allreduce_fit", None)
    log["benches"] = [b for b in log["benches"] if b["rows"]]
    return log


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.netlab_scale", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--out", required=True)
    p.add_argument("--rates", default="100mbit,20mbit")
    p.add_argument(
        "--hosts", default=",".join(f"{h}x{k}" for h, k in LABS), help="HOSTSxWORKERS,... (or HOSTS)"
    )
    p.add_argument("--sizes-100mbit", dest="sizes_100mbit")
    p.add_argument("--sizes-20mbit", dest="sizes_20mbit")
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--queue", help="tbf's queue limit of every lab (netlab bench --queue; default its own)")
    p.add_argument(
        "--software-rate",
        default=SOFTWARE_RATE,
        help=f"rate each lab is first timed at for its software time (default {SOFTWARE_RATE}; none: skip)",
    )
    p.add_argument(
        "--patterns",
        default=",".join(gloo.PATTERNS),
        help="comma-separated (default all; neighbour-exchange from 3 workers)",
    )
    p.add_argument(
        "--append",
        action="store_true",
        help="keep OUT's benches but these patterns' rows, which are measured anew",
    )
    p.add_argument("--render", action="store_true", help="only the table and figure, from the JSON")
    args = p.parse_args(argv)
    if args.software_rate in comma_list(args.rates):
        raise SystemExit(f"netlab_scale: --rates must not hold the --software-rate ({args.software_rate})")
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "scale-validation.json")
    if not args.render:
        import torch

        log = {"cpu": system.cpu_model(), "cpus": os.cpu_count(), "torch": torch.__version__}
        log.update(repeat=args.repeat, benches=[])
        first = [] if args.software_rate == "none" else [args.software_rate]
        # lab by lab, the software time first: a lab's benches close together in time
        labs = [(rate, h, k) for h, k in _labs(args.hosts) for rate in first + comma_list(args.rates)]
        if args.append:
            log = keep_others(read_json(path), comma_list(args.patterns), set(labs), args.repeat)
        for rate, hosts, k in labs:
            if lab_patterns(args, hosts, k):
                log["benches"].append(bench(args, rate, hosts, k))
                if rate == args.software_rate:
                    log["benches"][-1]["role"] = "software"
                atomic_write_json(path, log)
                print(
                    f"netlab_scale: {rate} {hosts}x{k} done ({log['benches'][-1]['duration_s']:.0f} s)",
                    flush=True,
                )
    log = read_json(path)
    atomic_write_text(os.path.join(args.out, "scale-validation.md"), markdown(log))
    figure(log, os.path.join(args.out, "scale-validation.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
