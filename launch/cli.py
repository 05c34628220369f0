"""The `ttabench` command: parses and dispatches; each subcommand lives in launch/commands/.

    ttabench run --synthetic --max-epochs 3 --thresholds 0.5:0.9:0.1
    ttabench run --benchmark resnet20 --data-dir DIR --workers 2 --target 0.8
    ttabench metrics RUN_DIR_OR_CURVE --thresholds 0.70:0.77:0.01 --json
    ttabench runs                                  # the runs in ./ttabench-results, newest first
    ttabench report RESULTS_DIR --html OUT_DIR     # the results tree as static web pages
    ttabench data download --dir data
    ttabench env

Errors a user can cause end in one line (``ttabench: error: ...``) and exit
code 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import sys
import traceback

from ttabench import UserError, __version__
from ttabench.launch.commands import (
    bench,
    data,
    env,
    netlab,
    predict,
    rcp_cmd,
    readers,
    run,
    runs,
    submit,
    sweep,
)
from ttabench.launch.usage import Parser


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="ttabench",
        description=(
            "Distributed-training benchmarks: time-to-accuracy (TTA), accuracy-after-time (AAT) "
            "and the time-to-multiple-thresholds curve (TTMT/ATTMT)."
        ),
    )
    p.add_argument("--version", action="version", version=f"ttabench {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks for user errors")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Each module registers its own subcommands, in the order `ttabench --help` lists them.
    for commands in (run, readers, rcp_cmd, runs, bench, predict, netlab, sweep, submit, data, env):
        commands.add_commands(sub)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(submit.join_option_values(sys.argv[1:] if argv is None else list(argv)))
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
