"""`ttabench bench allreduce`: measured all-reduce time per message size, beside the model.

    ttabench bench allreduce --workers 2 --bandwidth 1gbit --latency 50us --sizes 4kb,1mb,16mb
    ttabench bench allreduce --workers 2 --backend horovod --network 100mbit --json
    ttabench bench allreduce --workers 2 --sizes 8:256M:x4 --fit mylink.json

Figures follow nccl-tests' convention (its doc/PERFORMANCE.md): for a
buffer of S bytes taking t seconds, algbw = S/t and busbw = algbw *
2(p-1)/p, in GB/s (1e9 bytes/s); busbw is what each link carried and is
comparable across worker counts. `--fit FILE` fits the ring model's latency
alpha and bandwidth B to the median times by least squares and saves them
as a network profile that `ttabench run --network FILE` and
`ttabench predict --network FILE` take: measure a cluster's link once,
then emulate or predict with it.

Workers are started exactly as for training (torch.distributed.run's API or
horovodrun) and all-reduce float32 buffers through the same emulation code
as the DDP hook and the Horovod wrapper. For each size: a few warm-up
rounds, then `--repeat` timed rounds; a round's time is the MAX over workers
(each round starts after a barrier). Reported: median and spread, the
model's time, and the ratio measured / model.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile

from ttabench import UserError
from ttabench.launch import elastic, flags, procs
from ttabench.launch.net import cost, link
from ttabench.launch.record.tables import Column, Table, show
from ttabench.launch.usage import add_command


@dataclasses.dataclass
class BenchConfig:
    workers: int = 2
    backend: str = "torchrun"
    network: str | None = None
    bandwidth: str | None = None
    latency: str | None = None
    sizes: str = "4kb,1mb,16mb"
    repeat: int = 10
    warmup: int = 2
    threads: int = 1
    collective_timeout: float = 60.0

    def argv(self) -> list[str]:
        out = []
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is not None:
                out += ["--" + f.name.replace("_", "-"), str(v)]
        return out


def _add_args(p: argparse.ArgumentParser) -> None:
    d = BenchConfig()
    p.add_argument("--workers", type=int, default=d.workers, help="worker processes")
    p.add_argument("--backend", choices=("torchrun", "horovod"), default=d.backend)
    # the emulated link as `ttabench run` takes it: the same flags, help and profile files
    flags.add_fields(p, ("network", "bandwidth", "latency"))
    p.add_argument(
        "--sizes",
        default=d.sizes,
        help="message sizes, tc units (4kb = 4096 bytes): a list, or a range FROM:TO:xFACTOR (8:256M:x4)",
    )
    p.add_argument("--repeat", type=int, default=d.repeat, help="timed rounds per size")
    p.add_argument("--warmup", type=int, default=d.warmup, help="untimed rounds per size")
    p.add_argument("--threads", type=int, default=d.threads, help="intra-op threads per worker")
    p.add_argument("--collective-timeout", type=float, default=d.collective_timeout)


def _validate(cfg: BenchConfig) -> list[int]:
    if cfg.workers < 1:
        raise UserError(f"--workers must be >= 1, got {cfg.workers}")
    if cfg.repeat < 1 or cfg.warmup < 0:
        raise UserError("--repeat must be >= 1 and --warmup >= 0")
    link.resolve(cfg.network, cfg.bandwidth, cfg.latency)
    return link.parse_series(cfg.sizes, link.parse_size, "--sizes")


# -- worker side ---------------------------------------------------------------


def worker_main(argv=None) -> int:
    # Imported here: only workers need torch; the `ttabench` command starts without it.
    import torch

    from ttabench.launch.worker import collectives
    from ttabench.launch.worker import comm as comm_mod

    p = argparse.ArgumentParser(prog="python -m ttabench.launch.commands.bench")
    _add_args(p)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    out = args.out
    cfg = BenchConfig(**{k: v for k, v in vars(args).items() if k != "out"})
    sizes = _validate(cfg)
    torch.set_num_threads(cfg.threads)
    comm = comm_mod.init(cfg.backend, None, torch.device("cpu"), cfg.collective_timeout)
    emulated = link.resolve(cfg.network, cfg.bandwidth, cfg.latency)
    comm.emulate_network(emulated)
    rows = []
    try:
        for nbytes in sizes:
            r = collectives.time_pattern(comm, "allreduce", nbytes, cfg.warmup, cfg.repeat)
            model = emulated.allreduce_time(r["bytes"], comm.world_size)
            med = r["median_s"]
            algbw = r["bytes"] / med / 1e9
            rows.append(
                {
                    "bytes": r["bytes"],
                    "median_s": med,
                    "algbw_GBps": algbw,
                    "busbw_GBps": algbw * 2 * (comm.world_size - 1) / comm.world_size,
                    "min_s": r["min_s"],
                    "max_s": r["max_s"],
                    "model_s": model,
                    "ratio": med / model if model > 0 else None,
                    "times_s": r["times_s"],
                }
            )
        if comm.rank == 0:
            result = {
                "workers": comm.world_size,
                "backend": comm.backend,
                "dist_backend": comm.dist_backend,
                "network": emulated.describe(),
                "repeat": cfg.repeat,
                "rows": rows,
            }
            with open(out, "w", encoding="utf-8") as f:
                json.dump(result, f)
    finally:
        comm.close()
    return 0


# -- launcher side -------------------------------------------------------------


def run_allreduce(cfg: BenchConfig) -> dict:
    _validate(cfg)
    with tempfile.TemporaryDirectory(prefix="ttabench-bench-") as tmp:
        out = os.path.join(tmp, "result.json")
        args = ["-m", "ttabench.launch.commands.bench"] + cfg.argv() + ["--out", out]
        try:
            (_torchrun if cfg.backend == "torchrun" else _horovodrun)(cfg, args)
        except procs.Interrupted:
            raise KeyboardInterrupt from None  # the CLI's one line and exit code 130
        with open(out, encoding="utf-8") as f:
            return json.load(f)


def _torchrun(cfg: BenchConfig, args: list[str]) -> None:
    failed = elastic.elastic_run(args, nproc_per_node=cfg.workers, collective_timeout=cfg.collective_timeout)
    if failed is not None:
        raise UserError(f"all-reduce benchmark failed: {failed.failures}")


def _horovodrun(cfg: BenchConfig, args: list[str]) -> None:
    _, result = procs.run(procs.horovodrun_command(cfg.workers) + [sys.executable] + args)
    if result.interrupted:
        raise procs.Interrupted(result.interrupted)
    if result.code != 0:
        raise UserError(f"all-reduce benchmark under horovodrun failed (exit {result.code})")


def allreduce_table(result: dict) -> Table:
    net = result["network"]
    title = (
        f"all-reduce, {result['workers']} workers, {result['backend']} "
        f"({result['dist_backend']}), network: {net['profile']}"
        + (f" ({net['bandwidth']}, {1e6 * net['latency_s']:g} us)" if net["bandwidth"] else "")
    )
    columns = [
        Column("size", "bytes", lambda r: _size(r["bytes"])),
        Column("median", "median_s", lambda r: _ms(r["median_s"])),
        Column("min", "min_s", lambda r: _ms(r["min_s"])),
        Column("max", "max_s", lambda r: _ms(r["max_s"])),
        Column("algbw GB/s", "algbw_GBps", lambda r: f"{r['algbw_GBps']:.4f}"),
        Column("busbw GB/s", "busbw_GBps", lambda r: f"{r['busbw_GBps']:.4f}"),
        Column("model", "model_s", lambda r: _ms(r["model_s"]) if r["model_s"] else "-"),
        Column("measured/model", "ratio", lambda r: "-" if r["ratio"] is None else f"{r['ratio']:.3f}"),
    ]
    fit = result.get("fit")
    notes = []
    if fit:
        notes.append(
            f"fit (ring model, least squares on the medians): latency {1e6 * fit['latency_s']:.1f} us, "
            f"bandwidth {network_rate(fit['bandwidth_bytes_per_s'])}; profile saved to {fit['file']}"
        )
    return Table(columns, result["rows"], title=title, notes=notes)


def _ms(s: float) -> str:
    return f"{1e3 * s:.3f} ms"


def _size(n: int) -> str:
    for unit, scale in (("MiB", 1024**2), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:g} {unit}"
    return f"{n} B"


def network_rate(bytes_per_s: float) -> str:
    return link.format_rate(bytes_per_s)


def fit_profile(result: dict, path: str) -> dict:
    """Fit the ring model to the median times and save it as a network profile file."""
    p = result["workers"]
    alpha, bw = cost.fit_alpha_beta([(r["bytes"], r["median_s"]) for r in result["rows"]], p)
    residuals = [
        {"bytes": r["bytes"], "measured_s": r["median_s"], "fit_s": cost.ring_time(r["bytes"], p, alpha, bw)}
        for r in result["rows"]
    ]
    name = os.path.splitext(os.path.basename(path))[0]
    measured = {
        "workers": p,
        "backend": result["backend"],
        "emulated": result["network"],
        "points": residuals,
    }
    link.save_profile(path, link.Link(name, bw, alpha), {"fitted_from": measured})
    return {"file": path, "latency_s": alpha, "bandwidth_bytes_per_s": bw, "points": residuals}


def _check_writable(path: str) -> None:
    """Fail before minutes of measuring, not after, when the profile cannot be written."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise UserError(f"--fit: cannot write {path} (no such folder, or not writable)")


def config_of(args, cls):
    """The bench configuration dataclass `cls`, each field from the flag of its name."""
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


def measure_and_show(args, cfg, measure, fit, table) -> int:
    """What every bench command does with its checked configuration: refuse an unwritable
    --fit before minutes of measuring, `measure(cfg)`, `fit(result, path)` with --fit, then
    print the result as JSON (--json) or `table(result)`."""
    if args.fit is not None:
        _check_writable(args.fit)
    result = measure(cfg)
    if args.fit is not None:
        result["fit"] = fit(result, args.fit)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        show(table(result))
    return 0


def _cmd_allreduce(args) -> int:
    return measure_and_show(args, config_of(args, BenchConfig), run_allreduce, fit_profile, allreduce_table)


def add_commands(sub) -> None:
    b = sub.add_parser("bench", help="micro-benchmarks (all-reduce time vs the network model)")
    bsub = b.add_subparsers(dest="bench_command", required=True, metavar="BENCH")
    a = add_command(
        bsub, "allreduce", _cmd_allreduce, help="all-reduce time per message size, beside the model"
    )
    _add_args(a)
    a.add_argument("--json", action="store_true", help="print JSON")
    a.add_argument(
        "--fit",
        metavar="FILE.json",
        help="fit latency and bandwidth (ring model) and save them as a network profile file",
    )


if __name__ == "__main__":
    sys.exit(worker_main())
