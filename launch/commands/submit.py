"""`ttabench submit`: a benchmark run through a cluster scheduler.

    ttabench submit --scheduler slurm --nodes 2 --workers 1 --benchmark resnet20 \\
        --data-dir DIR --max-epochs 1 --results-dir R --wait
    ttabench submit --scheduler slurm --nodes 4 --partition gpu --time 1:00:00 --dry-run ...
    ttabench submit --nodes 2 --cpus-per-task 32 --mem 64G --qos high --setup env.sh ...
    ttabench submit --scheduler torchx:local_cwd --nodes 2 --workers 1 ...

Every option of `ttabench run` works here (less the per-node ones, which the
scheduler sets). Slurm: the sbatch script is written into the run folder
(job.sbatch) and submitted; the job's log is LOG_DIR/slurm-JOBID.out (--log-dir,
default this folder). Each request has its own flag and `#SBATCH` line; `--setup FILE`'s
lines run before the job; `--sbatch-arg` adds any other sbatch option, but none the script
already states. `--wait` blocks until the job ends, showing its state and
each evaluation, and exits with the run's exit code (124: stopped at --time).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys

from ttabench import UserError
from ttabench.divisions.results import RunPath, atomic_write_json, atomic_write_text, safe_name
from ttabench.launch.cluster import sbatch, slurm
from ttabench.launch.config import RunConfig
from ttabench.launch.flags import add_arguments, from_args
from ttabench.launch.record.jobenv import cluster_system_name
from ttabench.launch.usage import add_command

# Set per node by the scheduler's script, never by the user.
PER_NODE = ("nnodes", "node_rank", "rdzv_endpoint", "local_addr", "resume", "run_dir")
# Network file systems: a results folder elsewhere is local to each node.
SHARED_FS = (
    "nfs",
    "nfs4",
    "lustre",
    "gpfs",
    "beegfs",
    "cifs",
    "smb3",
    "ceph",
    "glusterfs",
    "panfs",
    "wekafs",
)


def file_system_type(path: str) -> str:
    """The type of the file system `path` is on (the longest mount point above it)."""
    path = os.path.realpath(path)
    best, kind = "", "unknown"
    try:
        with open("/proc/self/mounts", encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3:
                    mount = parts[1].replace("\\040", " ")
                    inside = path == mount or path.startswith(mount.rstrip("/") + "/")
                    if inside and len(mount) >= len(best):
                        best, kind = mount, parts[2]
    except OSError:
        pass
    return kind


def warn_if_local(results_dir: str, nodes: int) -> None:
    if nodes < 2:
        return
    kind = file_system_type(os.path.abspath(results_dir))
    if not any(kind == k or kind.startswith("fuse." + k) for k in SHARED_FS):
        print(
            f"ttabench: warning: {results_dir} is on a {kind} file system, not a network one: "
            "unless every node mounts this same folder, each node writes locally "
            "(the job then stops with a clear line on the node that cannot see the run folder)",
            file=sys.stderr,
        )


def run_config(args, data_here: bool = True) -> RunConfig:
    """The run's configuration, checked as `ttabench run` checks it; the data folder only when
    the nodes see this machine's files (`data_here`: Slurm, TorchX's local scheduler)."""
    if args.nodes < 1:
        raise UserError(f"--nodes must be >= 1, got {args.nodes}")
    cfg = dataclasses.replace(from_args(args), nnodes=args.nodes)
    # validate() asks a multi-node run for its rendezvous; the scheduler's script sets it.
    check = dataclasses.replace(cfg, rdzv_endpoint="scheduler:0")
    if not data_here:
        check = dataclasses.replace(check, data_dir=None, synthetic=True)
    check.validate()
    return cfg


def job_path(path: str) -> str:
    """A path as the job sees it: relative when under this folder, where the job runs (Slurm's
    default working directory is the submit directory), so a results folder carries no
    absolute path of the machine it was made on."""
    rel = os.path.relpath(os.path.abspath(path))
    return path if rel.startswith("..") else rel


def _remove_empty(run_dir: str, root: str, root_existed: bool) -> None:
    """Remove the run folder that was never used, and the parents RunPath.new made for it
    while they are empty (the results root too if it was made for it): a refused job
    leaves nothing behind."""
    root = os.path.abspath(root)
    path = os.path.abspath(run_dir)
    while path.startswith(root + os.sep) or (path == root and not root_existed):
        try:
            os.rmdir(path)
        except OSError:  # not empty: another run lives there
            return
        path = os.path.dirname(path)


SLURM_ONLY = ("cpus_per_task", "mem", "qos", "gres", "constraint", "setup", "sbatch_arg")


# The scheduler flags that are SlurmJob fields of their own name, passed on as parsed: a new
# one is a field, its flag and its name here.
SLURM_FLAGS = (
    "nodes",
    "partition",
    "time",
    "account",
    "gpus_per_node",
    "cpus_per_task",
    "mem",
    "qos",
    "gres",
    "constraint",
    "exclusive",
    "export",
)


def slurm_job(args) -> sbatch.SlurmJob:
    """What sbatch is asked for, every value checked: one line before anything is made."""
    setup_file, setup = sbatch.read_setup(args.setup) if args.setup else (None, [])
    return sbatch.SlurmJob(
        **{name: getattr(args, name) for name in SLURM_FLAGS},
        sbatch_args=list(args.sbatch_arg),
        log_dir=os.path.abspath(args.log_dir),
        workdir=os.getcwd(),
        setup_file=setup_file,
        setup=setup,
    )


def join_option_values(argv: list[str]) -> list[str]:
    """`--sbatch-arg --qos=high` as `--sbatch-arg=--qos=high`: argparse would take a value that
    starts with a dash for an option of its own."""
    out = list(argv)
    if "submit" not in out:
        return out
    for i in range(len(out) - 1):
        if out[i] == "--sbatch-arg" and out[i + 1].startswith("-"):
            out[i : i + 2] = [f"--sbatch-arg={out[i + 1]}", None]
    return [a for a in out if a is not None]


def _cmd_submit(args) -> int:
    name, _, target = args.scheduler.partition(":")
    cfg = run_config(args, data_here=name == "slurm" or target == "local_cwd")
    if name == "torchx":
        given = [f"--{k.replace('_', '-')}" for k in SLURM_ONLY if getattr(args, k)]
        if given:
            raise UserError(
                f"{', '.join(given)}: Slurm options; --scheduler {args.scheduler} does not use them"
            )
        from ttabench.launch.cluster import torchx  # imports TorchX, an optional dependency

        return torchx.submit_run(cfg, args, target)
    if name != "slurm" or target:
        raise UserError(f"--scheduler must be slurm or torchx:SCHEDULER, got {args.scheduler!r}")
    sbatch.check_line("--results-dir", cfg.results_dir)  # the script names it
    if args.time:
        slurm.time_limit_s(args.time)  # malformed: one line before anything is made
    job = slurm_job(args)
    if not args.dry_run:
        slurm.require("sbatch")
        slurm.check_fits(job)  # a request the cluster can never satisfy: one line, nothing made
    system_name = cluster_system_name(cfg)
    results_root = cfg.results_dir
    command = ["ttabench"] + sys.argv[1:]
    python = job_path(sys.executable)
    if args.dry_run:
        run_dir = RunPath(
            results_root, system_name, safe_name(cfg.benchmark_name()), cfg.division, "DRY-RUN"
        ).path
        cfg = dataclasses.replace(cfg, run_dir=run_dir, system=system_name)
        print(slurm.script(cfg, job, python, command, dry_run=True), end="")
        return 0
    warn_if_local(results_root, args.nodes)
    root_existed = os.path.isdir(results_root)
    run_dir = cfg.new_run_dir(system_name)
    cfg = dataclasses.replace(cfg, run_dir=run_dir, system=system_name)
    text = slurm.script(cfg, job, python, command)
    log_existed = os.path.isdir(job.log_dir)
    try:
        os.makedirs(job.log_dir, exist_ok=True)  # sbatch does not make it; the job could not log
    except OSError as e:
        _remove_empty(run_dir, results_root, root_existed)
        raise UserError(f"cannot create the log folder {job.log_dir}: {e.strerror}") from None
    try:
        job_id = slurm.submit(text)
    except BaseException:
        _remove_empty(run_dir, results_root, root_existed)
        if not log_existed:
            with contextlib.suppress(OSError):
                os.rmdir(job.log_dir)
        raise
    atomic_write_text(os.path.join(run_dir, "job.sbatch"), text)
    atomic_write_json(
        os.path.join(run_dir, "submit.json"),
        {
            "scheduler": "slurm",
            "job_id": job_id,
            "nodes": args.nodes,
            "command": command,
            "log": sbatch.log_path(job, job_id),
        },
    )
    log = sbatch.log_path(job, job_id)
    print(f"submitted Slurm job {job_id}; results: {run_dir}", flush=True)
    print(
        f"log: {log} (follow: squeue -j {job_id}; tail -f {log}; ttabench runs {run_dir} --watch)", flush=True
    )
    if not args.wait:
        return 0
    try:
        return slurm.wait(job_id, run_dir, out=lambda line: print(line, flush=True), log=log)
    except KeyboardInterrupt:
        print(f"ttabench: stopped waiting; job {job_id} keeps running (scancel {job_id})", file=sys.stderr)
        return 130


def add_commands(sub) -> None:
    s = add_command(
        sub,
        "submit",
        _cmd_submit,
        help="run a benchmark through a cluster scheduler (Slurm, TorchX)",
        formatter_class=argparse.RawDescriptionHelpFormatter,  # the epilog's examples keep their lines
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
    )
    g = s.add_argument_group("scheduler")
    g.add_argument(
        "--scheduler",
        default="slurm",
        help="slurm (sbatch + srun), or torchx:SCHEDULER (e.g. torchx:local_cwd, torchx:kubernetes)",
    )
    g.add_argument("--nodes", type=int, default=1, help="nodes; --workers is per node (default 1)")
    g.add_argument("--partition", help="Slurm partition (default: the cluster's default)")
    g.add_argument("--time", help="Slurm time limit, e.g. 30 or 1:00:00")
    g.add_argument("--account", help="Slurm account to charge")
    g.add_argument("--qos", help="Slurm quality of service")
    g.add_argument(
        "--cpus-per-task",
        type=int,
        help="CPUs per node for its launcher and all its workers (one task per node; "
        "default: the cluster's, all of a node with --exclusive)",
    )
    g.add_argument("--mem", help="memory per node in Slurm's units, e.g. 16G (default: the cluster's)")
    g.add_argument("--gres", help="generic resources per node, e.g. gpu:a100:4")
    g.add_argument("--constraint", help="node features the job needs, e.g. ib&avx512")
    g.add_argument(
        "--exclusive",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="whole nodes, shared with no other job (default); --no-exclusive lets Slurm place other "
        "jobs beside it",
    )
    g.add_argument(
        "--export",
        default="ALL",
        help="Slurm --export: the environment the job gets (default ALL: this shell's)",
    )
    g.add_argument(
        "--setup",
        metavar="FILE",
        help="shell lines put into the script before the job starts (module load, source a venv)",
    )
    g.add_argument(
        "--log-dir",
        default=".",
        help="Slurm: folder of the job's log slurm-JOBID.out, made at submission (default: this folder)",
    )
    g.add_argument("--gpus-per-node", type=int, help="GPUs per node")
    g.add_argument(
        "--sbatch-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="another sbatch option, '#SBATCH ARG' (repeatable), as '--name=value' or '--name value', "
        "e.g. --sbatch-arg=--begin=now+1hour; refused when ttabench or a flag above states it",
    )
    g.add_argument(
        "--image", help="TorchX: the image (container) with ttabench installed (local_cwd: this folder)"
    )
    g.add_argument(
        "--torchx-cfg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="TorchX: a scheduler run option (repeatable), e.g. queue=default for kubernetes",
    )
    g.add_argument(
        "--dry-run", action="store_true", help="print the job script (TorchX: the request); submit nothing"
    )
    g.add_argument(
        "--wait",
        action="store_true",
        help="block until the job ends, showing its progress; exit with the run's code",
    )
    add_arguments(s, skip=PER_NODE)
