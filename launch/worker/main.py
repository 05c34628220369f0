"""One worker process of a run: untimed set-up, the timed loop, rank 0's record.

Run it directly, or let a launcher start one per worker:

    python -m ttabench.launch.worker --benchmark resnet20 --synthetic --max-epochs 2
    torchrun --nproc-per-node 2 -m ttabench.launch.worker --benchmark resnet20 --data-dir DIR
    torchrun --nnodes 2 --node-rank 0 --nproc-per-node 1 --rdzv-backend c10d \\
        --rdzv-endpoint HOST:29400 -m ttabench.launch.worker --data-dir DIR ...

``ttabench run`` does the same through torch.distributed.run's API or
horovodrun, after checking the flags and creating the run folder.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import sys
import time
import traceback
from dataclasses import dataclass

from ttabench import UserError, __version__


def _detect_backend(requested: str) -> str:
    if requested not in ("auto", None):
        return requested
    if "HOROVOD_RANK" in os.environ:
        return "horovod"
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return "torchrun"
    return "none"


class _StopFlag:
    """First SIGINT/SIGTERM asks the loop to stop at the next step (agreed by all
    workers); a second one interrupts whatever is running."""

    def __init__(self):
        self.requested = False
        self.signal = None
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.signal = signal.Signals(signum).name

    def __call__(self) -> bool:
        return self.requested


def _device(cfg, local_rank: int):
    import torch

    if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise UserError("--device cuda, but CUDA is not available")
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def _autocast_dtype(precision: str, device):
    import torch

    if precision == "fp32":
        return None
    if precision == "fp16":
        if device.type != "cuda":
            raise UserError("--precision fp16 needs a GPU (use bf16 on CPUs)")
        return torch.float16
    return torch.bfloat16


def _agree_seed(comm, seed: int | None) -> int:
    """All workers use rank 0's seed; a fresh random one when none was given."""
    mine = seed if seed is not None else secrets.randbits(31)
    return int(comm.allreduce([float(mine) if comm.rank == 0 else 0.0], op="sum")[0])


@dataclass
class Setup:
    """What the untimed set-up produces for the loop and the record."""

    spec: object  # loop.LoopSpec
    model: object  # the plain torch.nn.Module (unwrapped)
    data: object  # cifar10.Cifar10 (host copy)
    resolved: dict  # values decided at run time, recorded in config.json
    model_info: dict
    recipe: dict
    submission: dict | None = None  # open division: the user's code and hooks (config.json)


def build(cfg, comm, seed: int, device, autocast_dtype) -> Setup:
    """Data, model, optimizer, schedule and data-parallel wrapping: everything untimed.

    An open-division run takes what its submission sets (divisions/open.py) and
    the closed recipe for the rest; the user's objects are checked here, before
    the clock starts.
    """
    import torch
    from ttabench.divisions import open as open_div
    from ttabench.launch.config import RunConfig, cadence_samples
    from ttabench.launch.worker import loop
    from ttabench.reference_impls import cifar10
    from ttabench.reference_impls.augment import Normalize
    from ttabench.reference_impls.recipe import BENCHMARKS, CLOSED
    from ttabench.reference_impls.resnet import resnet

    # Imported first: a submission that cannot load fails before any data is read.
    sub = open_div.load_submission(cfg.model, cfg.optimizer) if cfg.division == "open" else None
    data = cifar10.synthetic() if cfg.synthetic else cifar10.load(cfg.resolved_data_dir())
    world = comm.world_size
    batch_size = cfg.batch_size if sub is None else sub.batch_size(cfg.batch_size, RunConfig.batch_size)
    global_batch = batch_size * world
    n_train = len(data.train_labels)
    if global_batch > n_train:
        raise UserError(f"global batch {global_batch} is larger than the training set ({n_train} images)")
    depth, version = BENCHMARKS[cfg.benchmark]
    recipe = CLOSED
    # Horovod's collectives take contiguous tensors only, and channels_last
    # weights have channels_last gradients: under Horovod the model keeps
    # the default layout (recorded in config.json as resolved.channels_last).
    channels_last = cfg.channels_last and comm.backend != "horovod"
    user_model = sub is not None and sub.submission.model is not None
    torch.manual_seed(seed)  # the same initial weights on every worker
    model = (sub.make_model() if user_model else resnet(depth, version)).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if user_model:
        sub.check_forward(model, device, channels_last, autocast_dtype)
    steps_per_epoch = n_train // global_batch
    eval_every_samples = cadence_samples(cfg.eval_every, steps_per_epoch, global_batch, "--eval-every")
    checkpoint_every_samples = (
        0
        if cfg.checkpoint_every is None
        else cadence_samples(cfg.checkpoint_every, steps_per_epoch, global_batch, "--checkpoint-every")
    )
    max_epochs = cfg.max_epochs
    if max_epochs is None and cfg.max_steps is None and cfg.target is None and cfg.time_budget is None:
        max_epochs = recipe.epochs
    if sub is None or sub.optimizer is None:
        optimizer = torch.optim.SGD(
            model.parameters(),
            lr=recipe.base_lr,
            momentum=recipe.momentum,
            nesterov=recipe.nesterov,
            weight_decay=recipe.weight_decay,
        )
        lr_at = lambda epoch: recipe.lr_at(epoch, global_batch)  # noqa: E731
    else:
        planned = [e for e in (max_epochs, cfg.max_steps and cfg.max_steps / steps_per_epoch) if e]
        optimizer, lr_at = sub.make_optimizer(
            model,
            open_div.RunInfo(
                batch_size=batch_size,
                world_size=world,
                global_batch=global_batch,
                train_size=n_train,
                steps_per_epoch=steps_per_epoch,
                epochs=min(planned, default=None),
            ),
        )
    opened = _open_record(cfg, sub, model, optimizer, lr_at, batch_size, recipe) if sub else None
    wrapped = comm.wrap_model(model)
    optimizer = comm.wrap_optimizer(optimizer, model)
    spec = loop.LoopSpec(
        train_images=data.train_images.to(device),
        train_labels=data.train_labels.to(device),
        test_images=data.test_images.to(device),
        test_labels=data.test_labels.to(device),
        model=wrapped,
        eval_model=model,
        optimizer=optimizer,
        lr_at=lr_at,
        normalize=Normalize(cifar10.MEAN, cifar10.STD, device=device, channels_last=channels_last),
        batch_size=batch_size,
        seed=seed,
        eval_batch_size=cfg.eval_batch_size,
        augment=sub is None or sub.submission.augment != "none",
        train_step=sub.submission.train_step if sub else None,
        autocast_dtype=autocast_dtype,
        target=cfg.target,
        time_budget=cfg.time_budget,
        max_epochs=max_epochs,
        max_steps=cfg.max_steps,
        eval_every_samples=eval_every_samples,
        checkpoint_every_samples=checkpoint_every_samples,
    )
    warmup_s = None
    if cfg.compile != "none":
        # Compilation and its first calls happen here, on random input, before the
        # clock starts; the model, gradients and RNG are put back exactly.
        from ttabench.launch.worker import warmup

        hvd_backward = None
        if comm.backend == "horovod":
            hvd_backward = lambda loss: (loss.backward(), optimizer.synchronize())  # noqa: E731
        spec.model, spec.eval_model, warmup_s = warmup.prepare(
            model,
            wrapped,
            device=device,
            train_batch=batch_size,
            eval_batches=warmup.eval_batch_sizes(
                len(data.test_labels), world, comm.rank, cfg.eval_batch_size
            ),
            autocast_dtype=autocast_dtype,
            compile_mode=cfg.compile,
            channels_last=channels_last,
            train_step=spec.train_step,
            backward=hvd_backward,
            seed=seed,
        )
    resolved = {
        "global_batch": global_batch,
        "peak_lr": recipe.peak_lr(global_batch),
        "max_epochs": max_epochs,
        "eval_every_samples": eval_every_samples,
        "steps_per_epoch": steps_per_epoch,
        "channels_last": channels_last,
        "warmup_s": warmup_s,
    }
    model_info = {
        "name": cfg.benchmark,
        "depth": depth,
        "version": version,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    if opened is None:
        return Setup(spec, model, data, resolved, model_info, recipe.to_dict())
    resolved.update(opened["resolved"])
    return Setup(
        spec, model, data, resolved, opened["model"] or model_info, opened["recipe"], opened["submission"]
    )


def _open_record(cfg, sub, model, optimizer, lr_at, batch_size: int, recipe) -> dict:
    """What config.json says about an open run: the user's code, the model, and the recipe
    it really trained with (the closed recipe's numbers for every hook it left alone)."""
    from ttabench.divisions import open as open_div

    s = sub.submission
    loss = "submission train_step" if s.train_step is not None else recipe.loss
    if sub.optimizer is None:
        rec = dict(recipe.to_dict(), batch_per_worker=batch_size, augmentation=s.augment, loss=loss)
        resolved = {"batch_size": batch_size}
    else:
        rec = dict(
            open_div.describe_optimizer(optimizer),
            lr_schedule="submission lr_at" if lr_at is not None else "none (the optimizer's own)",
            batch_per_worker=batch_size,
            augmentation=s.augment,
            loss=loss,
        )
        initial = lr_at(0.0) if lr_at is not None else optimizer.param_groups[0]["lr"]
        resolved = {"batch_size": batch_size, "peak_lr": None, "initial_lr": float(initial)}
    info = None
    if s.model is not None:
        info = {
            "name": cfg.benchmark_name(),
            "class": type(model).__qualname__,  # its file: config.json's "submission"
            "parameters": sum(p.numel() for p in model.parameters()),
            "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        }
    return {
        "recipe": rec,
        "resolved": resolved,
        "model": info,
        "submission": sub.record(name=cfg.benchmark_name()),
    }


def _log_header(log, C, cfg, system_name: str) -> None:
    log.event(C.SUBMISSION_BENCHMARK, cfg.benchmark_name())
    log.event(C.SUBMISSION_DIVISION, cfg.division)
    log.event(C.SUBMISSION_ORG, "ttabench")
    log.event(C.SUBMISSION_PLATFORM, system_name)
    log.event(C.SUBMISSION_STATUS, "onprem")
    log.event(C.CACHE_CLEAR, True)
    log.start(C.INIT_START)


def _log_hyperparameters(log, C, setup: Setup) -> None:
    r, d = setup.recipe, setup.data
    log.event(C.SEED, setup.spec.seed)
    log.event(C.GLOBAL_BATCH_SIZE, setup.resolved["global_batch"])
    log.event(C.TRAIN_SAMPLES, len(d.train_labels))
    log.event(C.EVAL_SAMPLES, len(d.test_labels))
    if "warmup_epochs" in r:  # the closed recipe's SGD (closed runs, open runs that keep it)
        log.event(C.OPT_NAME, "sgd")
        log.event(C.OPT_BASE_LR, setup.resolved["peak_lr"])
        log.event(C.OPT_LR_WARMUP_EPOCHS, r["warmup_epochs"])
        log.event(C.OPT_LR_DECAY_BOUNDARY_EPOCHS, r["decay_epochs"])
        log.event(C.OPT_LR_DECAY_FACTOR, r["decay_factor"])
        log.event("opt_momentum", r["momentum"])
        log.event("opt_weight_decay", r["weight_decay"])
    else:  # an open submission's own optimizer (config.json's recipe has its param groups)
        log.event(C.OPT_NAME, r["optimizer"].lower())
        log.event(C.OPT_BASE_LR, setup.resolved["initial_lr"])
    log.event("dataset", d.describe()["name"])


def run_worker(cfg, *, command: list[str] | None = None) -> int:
    """Set up, train, record. Returns the process exit code."""
    import torch
    from ttabench.divisions import metrics
    from ttabench.divisions.results import atomic_write_json, new_run_dir
    from ttabench.launch.net import lab as netlab
    from ttabench.launch.net import link as network
    from ttabench.launch.record import progress, system
    from ttabench.launch.record.mllog import C, RunLog
    from ttabench.launch.record.recorder import Recorder
    from ttabench.launch.worker import checkpoint, loop
    from ttabench.launch.worker import comm as comm_mod

    stop = _StopFlag()
    backend = _detect_backend(cfg.backend)
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("HOROVOD_LOCAL_SIZE", 1)))
    local_rank = int(os.environ.get("LOCAL_RANK", os.environ.get("HOROVOD_LOCAL_RANK", 0)))
    # Threads: decided here, before any parallel region runs; torchrun's
    # OMP_NUM_THREADS=1 default would otherwise leave cores idle, and more
    # threads than cores per node would oversubscribe them.
    threads = cfg.threads or max(1, system.usable_cores() // max(1, local_world))
    torch.set_num_threads(threads)
    device = _device(cfg, local_rank)
    autocast_dtype = _autocast_dtype(cfg.precision, device)
    comm = comm_mod.init(backend, cfg.dist_backend, device, cfg.collective_timeout)
    link = network.resolve(cfg.network, cfg.bandwidth, cfg.latency)
    comm.emulate_network(link)
    rank0 = comm.rank == 0
    seed = _agree_seed(comm, cfg.seed)
    desc = system.describe()
    system_name = cfg.system or system.default_system_name(desc)

    run_dir, log, recorder = cfg.run_dir, RunLog(None), None
    # torchrun's elastic agent restarts every worker after a failure
    # (--max-restarts): they continue from the run's last checkpoint.
    restarted = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0
    state = None
    if run_dir is not None and (cfg.resume or restarted):
        state = checkpoint.load(run_dir)
        restarted = restarted or cfg.resume  # a launcher restart without a checkpoint begins again
        if state is not None and "seed" in state["loop"]:
            # A run without --seed drew one; the continued run must keep it (the data
            # order and augmentation follow it), whatever this start drew.
            seed = state["loop"]["seed"]
    try:
        if rank0:
            if run_dir is None:
                run_dir = new_run_dir(cfg.results_dir, system_name, cfg.benchmark_name(), cfg.division)
            log_path = os.path.join(run_dir, "mllog.txt")
            if state is not None:  # drop what the stopped run logged after its checkpoint
                checkpoint.truncate_log(log_path, state["mllog_lines"])
            elif restarted:  # no checkpoint yet: the restarted run begins again
                for name in ("mllog.txt", "curve.csv", "summary.json"):
                    if os.path.exists(os.path.join(run_dir, name)):
                        os.unlink(os.path.join(run_dir, name))
            log = RunLog(log_path)
            if state is None:
                _log_header(log, C, cfg, system_name)
        t_init = time.perf_counter()
        setup = build(cfg, comm, seed, device, autocast_dtype)
        if state is not None:
            setup.spec.resume = checkpoint.restore(state, setup.model, setup.spec.optimizer)
        if cfg.checkpoint_every is not None:

            def save_checkpoint(loop_state, model=setup.model, optimizer=setup.spec.optimizer):
                if rank0:
                    checkpoint.save(
                        run_dir,
                        model=model,
                        optimizer=optimizer,
                        loop_state=loop_state,
                        mllog_lines=checkpoint.count_lines(log.path),
                    )

            setup.spec.checkpoint = save_checkpoint
        init_s = time.perf_counter() - t_init
        hooks = []
        if rank0 and state is not None:
            previous = _read_summary(run_dir)
            recorder = Recorder(
                run_dir,
                log,
                {
                    **{k: previous[k] for k in _SUMMARY_BASE_KEYS if k in previous},
                    "resumes": previous.get("resumes", [])
                    + [{"step": state["loop"]["step"], "train_time_s": state["loop"]["train_s"]}],
                },
                cfg,
                curve=state["loop"]["curve"],
            )
            hooks = [
                recorder,
                progress.make(
                    cfg.progress,
                    f"{cfg.benchmark_name()} (resumed)",
                    metrics.thresholds(*metrics.parse_thresholds(cfg.thresholds)),
                    cfg.target,
                ),
            ]
        elif rank0:
            resolved = dict(
                setup.resolved,
                seed=seed,
                world_size=comm.world_size,
                nodes=comm.nodes,
                local_world_size=comm.local_world_size,
                backend=comm.backend,
                dist_backend=comm.dist_backend,
                device=str(device),
                threads=threads,
                precision=cfg.precision,
                compile=cfg.compile,
                system=system_name,
                network=link.describe(),
                network_shaping=netlab.shaping_from_env(),
            )
            atomic_write_json(
                os.path.join(run_dir, "config.json"),
                {
                    "ttabench_version": __version__,
                    "command": _user_command(command),
                    "config": cfg.to_dict(),
                    "resolved": resolved,
                    "model": setup.model_info,
                    **({"submission": setup.submission} if setup.submission is not None else {}),
                    "recipe": setup.recipe,
                    "data": setup.data.describe(),
                    "software": desc["software"],
                },
            )
            system_dir = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(run_dir))))
            atomic_write_json(os.path.join(system_dir, "system.json"), desc)
            _log_hyperparameters(log, C, setup)
            recorder = Recorder(
                run_dir,
                log,
                {
                    "benchmark": cfg.benchmark_name(),
                    "division": cfg.division,
                    "dataset": setup.data.describe()["name"],
                    "synthetic": setup.data.synthetic,
                    "seed": seed,
                    "world_size": comm.world_size,
                    "nodes": comm.nodes,
                    "backend": comm.backend,
                    "global_batch": setup.resolved["global_batch"],
                    "init_s": init_s,
                },
                cfg,
            )
            title = f"{cfg.benchmark_name()} {cfg.division}" + (
                " [synthetic data]" if setup.data.synthetic else ""
            )
            thresholds = metrics.thresholds(*metrics.parse_thresholds(cfg.thresholds))
            hooks = [recorder, progress.make(cfg.progress, title, thresholds, cfg.target)]
        if state is None:
            log.end(C.INIT_STOP)
        result = loop.run(setup.spec, comm, loop.HookList(hooks), stop_requested=stop)
        breakdowns = comm.gather(result.breakdown)
        if rank0:
            if cfg.save_model:
                _save_model(setup.model, os.path.join(run_dir, "model.pt"))
            worst = {k: max(b[k] for b in breakdowns) for k in breakdowns[0] if k != "rank"}
            recorder.write_summary(
                {
                    "status": result.status,
                    "stop_reason": result.stop_reason,
                    "signal": stop.signal,
                    "diverged_step": result.diverged_step,
                    "steps": result.steps,
                    "samples": result.samples,
                    "epochs": result.epochs,
                    "train_time_s": result.train_time_s,
                    "total_time_s": result.total_time_s,
                    "eval_time_s": worst["eval_s"],
                    "throughput_img_s": (
                        result.samples / result.train_time_s if result.train_time_s > 0 else None
                    ),
                    "time_breakdown": {"max_over_ranks": worst, "per_rank": breakdowns},
                }
            )
            _print_summary(run_dir)
        # Leave together: a worker tearing its process group down while a peer
        # is still sending can abort at exit.
        if result.status != "interrupted":  # an interrupted peer may already be gone
            comm.barrier()
        return {"success": 0, "interrupted": 130}.get(result.status, 3)
    except BaseException as e:
        if rank0 and run_dir is not None:
            status = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
            try:
                _record_failure(run_dir, recorder, status, e, comm.rank, stop.signal)
            except UserError as again:  # e.g. the disk is full: the first error is the one to raise
                print(f"ttabench: note: the run could not be marked {status}: {again}", file=sys.stderr)
            try:
                log.end(C.RUN_STOP, status="aborted", ttabench_status=status)
            except UserError:
                pass  # the log's own write failure was reported by the first error
        raise
    finally:
        log.close()
        comm.close()


def _user_command(command: list[str] | None) -> list[str]:
    """The command the user typed (the launcher passes it to its workers), program by name only:
    a results folder must not carry paths of the machine it was made on."""
    if command is None and os.environ.get("TTABENCH_COMMAND"):
        command = json.loads(os.environ["TTABENCH_COMMAND"])
    command = list(command or sys.argv)
    if command:
        name = os.path.basename(command[0])
        command[0] = "ttabench" if name in ("__main__.py", "cli.py") else name
    return command


_SUMMARY_BASE_KEYS = (
    "benchmark",
    "division",
    "dataset",
    "synthetic",
    "seed",
    "world_size",
    "nodes",
    "backend",
    "global_batch",
    "init_s",
)


def _read_summary(run_dir: str) -> dict:
    from ttabench.divisions.results import read_json

    try:
        return read_json(os.path.join(run_dir, "summary.json"))
    except UserError:
        return {}


def _record_failure(run_dir, recorder, status, e, rank, signal_name) -> None:
    from ttabench.divisions.results import atomic_write_json

    info = {"status": status, "error": _one_line(e), "failed_rank": rank, "signal": signal_name}
    if recorder is not None:
        recorder.write_summary(info)
    else:  # failed during set-up: there is no curve, but the folder says why
        atomic_write_json(os.path.join(run_dir, "summary.json"), info)


def _save_model(model, path: str) -> None:
    """Rank 0's final weights and buffers (a plain state_dict, loadable with weights_only=True)."""
    import io

    import torch
    from ttabench.divisions.results import atomic_write_bytes

    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buf)
    atomic_write_bytes(path, buf.getvalue())


def _one_line(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0] if msg else ''}".rstrip(": ")


def _print_summary(run_dir: str) -> None:
    from ttabench.launch.commands.tables import print_run_summary

    print_run_summary(run_dir)


def build_parser(prog: str = "python -m ttabench.launch.worker") -> argparse.ArgumentParser:
    from ttabench.launch.config import add_arguments

    p = argparse.ArgumentParser(prog=prog, description="Run one worker of a ttabench run.")
    add_arguments(p)
    p.add_argument("--debug", action="store_true", help="show tracebacks for user errors")
    return p


def main(argv=None) -> int:
    from ttabench.launch.config import from_args

    args = build_parser().parse_args(argv)
    try:
        cfg = from_args(args)
        cfg.validate()
        return run_worker(cfg)
    except UserError as e:
        if args.debug:
            traceback.print_exc()
        print(f"ttabench: error: {e}", file=sys.stderr)
        return 2


def entry() -> int:
    """`python -m ttabench.launch.worker`: run main() under torchrun's error recorder, then leave."""
    # @record writes an uncaught exception to torchrun's error file, so the
    # launcher can say which rank failed and why.
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
