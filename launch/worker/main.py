"""One worker process of a run: untimed set-up, the timed loop, rank 0's record.

Run it directly, or let a launcher start one per worker:

    python -m ttabench.launch.worker --benchmark resnet20 --synthetic --max-epochs 2
    torchrun --nproc-per-node 2 -m ttabench.launch.worker --benchmark resnet20 --data-dir DIR
    torchrun --nnodes 2 --node-rank 0 --nproc-per-node 1 --rdzv-backend c10d \\
        --rdzv-endpoint HOST:29400 -m ttabench.launch.worker --data-dir DIR ...

Started by hand, it takes the options of ``ttabench run`` (``--resume RUN_DIR``
continues a run folder from its checkpoint, as there) and validates them.
``ttabench run`` checks the flags once, creates the run folder and starts the
workers (torch.distributed.run's API or horovodrun) with one hidden argument,
``--run-config JSON``: the validated ``RunConfig`` whole (``RunConfig.to_json``),
which the worker takes as it is, without parsing or validating again.

The run, in order (``run_worker``): join the run (``context``), load the
checkpoint to continue from, open rank 0's run folder (``folder``),
build the workload (``workload``), record the start, run the timed loop
(``loop``), record the end.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import traceback

from ttabench import UserError
from ttabench.launch.config import RunConfig
from ttabench.launch.flags import add_arguments, add_resume_argument, from_args, resume_config
from ttabench.launch.record import timelimit
from ttabench.launch.record.hooks import HookList
from ttabench.launch.worker import checkpoint, context, loop, workload
from ttabench.launch.worker.checkpoint import Checkpoint
from ttabench.launch.worker.folder import RunFolder


class _StopFlag:
    """First SIGINT/SIGTERM asks the loop to stop at the next step (agreed by all
    workers); a second one, DEDUP_S or more after the first, interrupts whatever is
    running. One stop request often arrives twice within moments: a scheduler
    (scancel) or a terminal's Ctrl-C signals every process of the run, and the
    launcher then forwards its own signal to its workers.

    SIGUSR1 is the scheduler's notice that the job's time limit is near (the sbatch
    script asks Slurm for it, --signal=USR1@MARGIN): the loop stops the same way and
    the run records `time_limit` as its stop reason. Calling the flag gives 0 (no
    request), 1 (interrupted) or 2 (time limit), a number the workers agree on by MAX."""

    DEDUP_S = 2.0

    def __init__(self):
        self.requested = False
        self.signal = None
        self.at = None
        for sig in (signal.SIGINT, signal.SIGTERM, timelimit.SIGNAL):
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        now = time.monotonic()
        if self.requested:
            if now - self.at < self.DEDUP_S:
                return  # the same request, delivered again
            raise KeyboardInterrupt
        self.requested, self.at = True, now
        self.signal = signal.Signals(signum).name

    def __call__(self) -> int:
        if not self.requested:
            return 0
        return 2 if self.signal == timelimit.SIGNAL.name else 1


def _checkpoint_to_resume(cfg: RunConfig) -> tuple[Checkpoint | None, bool]:
    """The checkpoint to continue from (or None), and whether this start continues a run."""
    # torchrun's elastic agent restarts every worker after a failure
    # (--max-restarts): they continue from the run's last checkpoint.
    restarted = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0
    if cfg.run_dir is None or not (cfg.resume or restarted):
        return None, restarted
    # A launcher restart without a checkpoint yet begins again.
    return checkpoint.load(cfg.run_dir), True


def run_worker(cfg: RunConfig, *, command: list[str] | None = None) -> int:
    """Set up, train, record. Returns the process exit code."""
    stop = _StopFlag()
    ctx = context.join(cfg)
    resumed, restarted = _checkpoint_to_resume(cfg)
    if resumed is not None:
        # A run without --seed drew one; the continued run must keep it (the data
        # order and augmentation follow it), whatever this start drew.
        ctx.seed = resumed.loop.seed
    folder = RunFolder(cfg, ctx)
    try:
        folder.open(resumed, restarted)
        t_init = time.perf_counter()
        setup = workload.build(cfg, ctx.comm, ctx.seed, ctx.device, ctx.autocast_dtype, phase=folder.phase)
        if resumed is not None:
            setup.spec.resume = checkpoint.restore(resumed, setup.model, setup.spec.optimizer)
        if cfg.checkpoint_every is not None:
            setup.spec.checkpoint = folder.save_checkpoint
        hooks = folder.start(setup, time.perf_counter() - t_init, resumed, command)
        result = loop.run(setup.spec, ctx.comm, HookList(hooks), stop_requested=stop)
        folder.finish(result, ctx.comm.gather(result.breakdown), stop.signal)
        # Leave together: a worker tearing its process group down while a peer
        # is still sending can abort at exit.
        # An interrupted peer may already be gone; at a time limit every rank stopped by agreement.
        if result.status != "interrupted" or result.stop_reason == timelimit.REASON:
            ctx.comm.barrier()
        if result.stop_reason == timelimit.REASON:
            if ctx.comm.rank == 0 and cfg.backend_name() == "none":  # a launcher says it otherwise
                print(timelimit.line(cfg.run_dir or folder.run_dir), file=sys.stderr)
            return timelimit.EXIT
        return {"success": 0, "interrupted": 130}.get(result.status, 3)
    except BaseException as e:
        folder.fail(e, stop.signal)
        raise
    finally:
        folder.close()
        ctx.comm.close()


def build_parser(prog: str = "python -m ttabench.launch.worker") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Run one worker of a ttabench run.")
    add_arguments(p, skip=("resume",))
    add_resume_argument(p)
    p.add_argument("--run-config", help=argparse.SUPPRESS)  # from a launcher: RunConfig.to_json()
    p.add_argument("--debug", action="store_true", help="show tracebacks for user errors")
    return p


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """A launcher's configuration as it is; otherwise the flags, validated as by `ttabench run`."""
    if args.run_config is not None:
        return RunConfig.from_json(args.run_config)
    if args.resume_dir is not None:
        return resume_config(args.resume_dir)  # validated there
    cfg = from_args(args)
    cfg.validate()
    return cfg


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run_worker(config_from_args(args))
    except UserError as e:
        if args.debug:
            traceback.print_exc()
        print(f"ttabench: error: {e}", file=sys.stderr)
        return 2


def entry() -> int:
    """`python -m ttabench.launch.worker`: run main() under torchrun's error recorder, then leave."""
    # @record writes an uncaught exception to torchrun's error file, so the
    # launcher can say which rank failed and why. Imported here: the elastic
    # package pulls in torch.distributed.elastic's whole agent at import.
    from torch.distributed.elastic.multiprocessing.errors import record

    try:
        code = record(main)()
    except SystemExit as e:  # argparse's usage error
        code = e.code if isinstance(e.code, int) else 2
    if code is None:  # record() turns --help's SystemExit(0) into None
        code = 0
    # Everything is recorded and flushed by now. Leave without the
    # interpreter's teardown: destroying gloo's threads at exit occasionally
    # aborts (SIGABRT, "terminate called without an active exception") a
    # worker whose run had finished, which would fail a successful run.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
