"""The `ttabench` command: a thin layer over library calls.

    ttabench run --synthetic --max-epochs 3 --thresholds 0.5:0.9:0.1
    ttabench run --benchmark resnet20 --data-dir DIR --workers 2 --target 0.8
    ttabench metrics RUN_DIR_OR_CURVE --thresholds 0.70:0.77:0.01 --json
    ttabench data download --dir data
    ttabench env

Errors a user can cause end in one line (``ttabench: error: ...``) and exit
code 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import traceback

from ttabench import UserError, __version__


def _cmd_run(args) -> int:
    import dataclasses

    from ttabench.launch import launcher
    from ttabench.launch.config import from_args

    if args.resume_dir is not None:
        return launcher.launch(launcher.resume_config(args.resume_dir), argv=sys.argv)
    cfg = from_args(args)
    cfg.validate()
    seeds = launcher.seed_list(cfg.seed, args.seeds, args.seed_list)
    if seeds is None:
        return launcher.launch(cfg, argv=sys.argv)
    worst = 0
    for i, seed in enumerate(seeds):
        print(f"ttabench: seed {seed} ({i + 1} of {len(seeds)})", flush=True)
        code = launcher.launch(dataclasses.replace(cfg, seed=seed), argv=sys.argv)
        if code == 130:
            return code  # interrupted: do not start the next seed
        worst = worst or code
    return worst


def _cmd_data_download(args) -> int:
    from ttabench.reference_impls import download

    if args.md5 is not None and not re.fullmatch(r"[0-9a-fA-F]{32}", args.md5):
        raise UserError(f"--md5 must be 32 hexadecimal digits, got {args.md5!r}")
    path = download.download(args.dir, url=args.url or download.URL, md5=args.md5 or download.MD5)
    print(f"CIFAR-10 ready: {path}")
    return 0


def _cmd_data_synthetic(args) -> int:
    from ttabench.reference_impls import cifar10

    data = cifar10.synthetic(train_size=args.train_size, test_size=args.test_size, seed=args.seed)
    cifar10.write(data, args.dir)
    print(f"synthetic data set ({args.train_size} train / {args.test_size} test) written to {args.dir}")
    return 0


def _cmd_env(args) -> int:
    from ttabench.launch.record import system

    desc = system.describe()
    desc["system_name"] = system.default_system_name(desc)
    print(json.dumps(desc, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from ttabench.launch.commands import bench, readers, sweep
    from ttabench.launch.config import add_arguments, add_resume_argument
    from ttabench.launch.net import lab as netlab

    p = argparse.ArgumentParser(
        prog="ttabench",
        description=(
            "Distributed-training benchmarks: time-to-accuracy (TTA), accuracy-after-time (AAT) "
            "and the time-to-multiple-thresholds curve (TTMT/ATTMT)."
        ),
    )
    p.add_argument("--version", action="version", version=f"ttabench {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks for user errors")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="train a benchmark and write a results folder",
        description="Train a benchmark under the timed loop and write "
        "results/<system>/<benchmark>/<division>/<run-id>/.",
    )
    add_arguments(run, skip=("resume",))
    add_resume_argument(run)
    seeds = run.add_argument_group("several runs").add_mutually_exclusive_group()
    seeds.add_argument(
        "--seeds",
        type=int,
        metavar="N",
        help="run N times with distinct seeds (--seed S gives S, S+1, ...; "
        "otherwise N fresh random seeds), one run folder each",
    )
    seeds.add_argument("--seed-list", metavar="S1,S2,...", help="run once per listed seed")
    run.set_defaults(func=_cmd_run)

    readers.add_commands(sub)
    bench.add_commands(sub)
    netlab.add_commands(sub)
    sweep.add_commands(sub)

    d = sub.add_parser("data", help="get or make data sets")
    dsub = d.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    dl = dsub.add_parser("download", help="download and verify CIFAR-10 (python version)")
    dl.add_argument("--dir", default="data", help="where to put cifar-10-batches-py (default: data)")
    dl.add_argument("--url", help="a mirror of cifar-10-python.tar.gz (default: the official site)")
    dl.add_argument("--md5", help="the archive's md5 (default: the official archive's)")
    dl.set_defaults(func=_cmd_data_download)
    sy = dsub.add_parser("synthetic", help="write the synthetic data set in CIFAR-10's format")
    sy.add_argument("--dir", required=True)
    sy.add_argument("--train-size", type=int, default=5000)
    sy.add_argument("--test-size", type=int, default=1000)
    sy.add_argument("--seed", type=int, default=0)
    sy.set_defaults(func=_cmd_data_synthetic)

    e = sub.add_parser("env", help="print the system description recorded with results")
    e.set_defaults(func=_cmd_env)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UserError as e:
        if args.debug:
            traceback.print_exc()
        print(f"ttabench: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ttabench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
