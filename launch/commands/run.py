"""`ttabench run`: train a benchmark and write its results folder (once, or once per seed)."""

from __future__ import annotations

import dataclasses
import sys

from ttabench.launch import launcher
from ttabench.launch.config import DEFAULT_RESULTS_DIR
from ttabench.launch.flags import add_run_flags, from_args, resume_config
from ttabench.launch.usage import add_command


def _cmd_run(args) -> int:
    if args.resume_dir is not None:
        return launcher.launch(resume_config(args.resume_dir), argv=sys.argv)
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


def add_commands(sub) -> None:
    run = add_command(
        sub,
        "run",
        _cmd_run,
        help="train a benchmark and write a results folder",
        description="Train a benchmark under the timed loop and write "
        "RESULTS_DIR/<system>/<benchmark>/<division>/<run-id>/ (RESULTS_DIR: --results-dir, "
        f"default ./{DEFAULT_RESULTS_DIR}, git-ignored and apart from the repository's committed "
        "results/). `ttabench runs` lists what is there.",
    )
    add_run_flags(run)
