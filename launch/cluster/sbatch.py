"""What a Slurm job asks for: the `#SBATCH` header of its script, the user's own sbatch
options (`--sbatch-arg`) and set-up lines (`--setup FILE`), each checked before anything
is made.

Every option the script states is written as `--name=value`, so the header reads the
same whoever wrote the request. An option ttabench sets itself (the log, the working
directory, requeue, the signal before the time limit, ...) or one that has its own
`submit` flag cannot also come through `--sbatch-arg`: Slurm would take the last of two
`#SBATCH` lines silently, and the job would not be the one the record describes.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex

from ttabench import UserError

# sbatch's one-letter forms of the options below (sbatch --help).
SHORT = {
    "-A": "account",
    "-c": "cpus-per-task",
    "-C": "constraint",
    "-D": "chdir",
    "-e": "error",
    "-J": "job-name",
    "-N": "nodes",
    "-o": "output",
    "-p": "partition",
    "-q": "qos",
    "-t": "time",
}
# Options with a `ttabench submit` flag of their own: the flag, not --sbatch-arg.
DEDICATED = {
    "nodes": "--nodes",
    "partition": "--partition",
    "time": "--time",
    "account": "--account",
    "qos": "--qos",
    "gres": "--gres",
    "constraint": "--constraint",
    "cpus-per-task": "--cpus-per-task",
    "mem": "--mem",
    "exclusive": "--exclusive/--no-exclusive",
    "gpus-per-node": "--gpus-per-node",
    "export": "--export",
    "output": "--log-dir",
    "error": "--log-dir",
}
# Options ttabench sets itself, and why.
FIXED = {
    "job-name": "the job is named after the benchmark",
    "ntasks-per-node": "one launcher per node",
    "chdir": "the job runs in the submitting folder",
    "open-mode": "the log is appended to, never replaced",
    "no-requeue": "a run is never started again over its own folder",
    "requeue": "the script says --no-requeue: a run is never started again over its own folder",
    "signal": "it asks for SIGUSR1 before --time's limit",
}
_MEM = re.compile(r"\d+[KMGT]?", re.IGNORECASE)
# A word sbatch reads as one argument without quotes: its `#SBATCH` parser splits on whitespace
# outside quotes, takes `"` and `'` as quotes, `\\` as an escape and an unquoted `#` as a comment.
_PLAIN = re.compile(r"[^\s\"'\\#]*")


def check_line(flag: str, value: str | None) -> None:
    """One line when `value` holds a control character (a newline above all): in the script's
    header it would end the `#SBATCH` line, and the rest would run as a shell command, or stop
    sbatch reading the options below it."""
    bad = [c for c in value or "" if ord(c) < 32 or 127 <= ord(c) < 160]
    if bad:
        raise UserError(f"{flag} must not hold control characters such as {bad[0]!r}, got {value!r}")


def sbatch_word(value: str) -> str:
    """`value` as one argument of an `#SBATCH` line: as is when it is plain, else in double quotes
    with `"`, `\\` and `#` escaped by a backslash (what sbatch's script parser undoes)."""
    if _PLAIN.fullmatch(value):
        return value
    return '"' + re.sub(r'(["\\#])', r"\\\1", value) + '"'


@dataclasses.dataclass
class SlurmJob:
    """What sbatch is asked for; the run's own options live in RunConfig."""

    nodes: int = 1
    partition: str | None = None
    time: str | None = None
    account: str | None = None
    gpus_per_node: int | None = None
    sbatch_args: list[str] = dataclasses.field(default_factory=list)  # normalised (sbatch_arg)
    log_dir: str = "."  # made at submission; absolute in the script
    workdir: str = "."  # the job's working directory (--chdir): where the script was made
    cpus_per_task: int | None = None  # the node's launcher and all its workers: one task per node
    mem: str | None = None  # per node, Slurm's units (0: all of it)
    qos: str | None = None
    gres: str | None = None
    constraint: str | None = None
    exclusive: bool = True  # a benchmark does not share its nodes unless asked to
    export: str = "ALL"  # the submitting shell's environment, as Slurm's default
    setup_file: str | None = None  # absolute; its lines in setup
    setup: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self):
        for flag, value in (
            ("--partition", self.partition),
            ("--time", self.time),
            ("--account", self.account),
            ("--log-dir", self.log_dir),
            ("the working directory", self.workdir),
            ("--mem", self.mem),
            ("--qos", self.qos),
            ("--gres", self.gres),
            ("--constraint", self.constraint),
            ("--export", self.export),
            ("--setup", self.setup_file),
        ):
            check_line(flag, value)
        if "%" in self.log_dir or "\\" in self.log_dir:
            raise UserError(
                f"--log-dir must not hold % or \\ (sbatch reads them in the log's name as its file name "
                f"patterns), got {self.log_dir!r}"
            )
        if self.cpus_per_task is not None and self.cpus_per_task < 1:
            raise UserError(f"--cpus-per-task must be >= 1, got {self.cpus_per_task}")
        if self.mem is not None and not _MEM.fullmatch(self.mem):
            raise UserError(
                f"--mem must be a size in Slurm's units (e.g. 4000M, 16G, 0 for all), got {self.mem!r}"
            )
        for flag, value in (("--qos", self.qos), ("--gres", self.gres), ("--constraint", self.constraint)):
            if value is not None and (not value.strip() or any(c.isspace() for c in value)):
                raise UserError(f"{flag} must be one word without spaces, got {value!r}")
        if not self.export.strip() or any(c.isspace() for c in self.export):
            raise UserError(
                f"--export must be ALL, NONE or NAME[=VALUE],... without spaces, got {self.export!r}"
            )
        self.sbatch_args = [sbatch_arg(a) for a in self.sbatch_args]
        names = [option_name(a) for a in self.sbatch_args]
        for name in names:
            if names.count(name) > 1:
                raise UserError(
                    f"--sbatch-arg: --{name} given twice (Slurm would keep the last one silently)"
                )


def option_name(arg: str) -> str:
    """The long name of an sbatch option as written (`--qos=high`, `--qos high`, `-q high`)."""
    head = arg.split(None, 1)[0] if arg.strip() else arg
    if head.startswith("--"):
        return head[2:].split("=", 1)[0]
    return SHORT.get(head[:2], head.lstrip("-"))


def sbatch_arg(arg: str) -> str:
    """One `--sbatch-arg`, as the script's `#SBATCH` line states it: `--x=y` from `--x=y` or
    `--x y`; one line when it is no sbatch option or repeats one ttabench states."""
    check_line("--sbatch-arg", arg)
    text = arg.strip()
    if not text.startswith("-") or text in ("-", "--"):
        raise UserError(
            f"--sbatch-arg must be an sbatch option ('--name=value' or '--name value'), got {arg!r}"
        )
    name = option_name(text)
    if name in DEDICATED:
        raise UserError(
            f"--sbatch-arg {arg!r}: use {DEDICATED[name]} instead (the script states --{name} from it)"
        )
    if name in FIXED:
        raise UserError(f"--sbatch-arg {arg!r}: ttabench sets --{name} itself ({FIXED[name]})")
    if text.startswith("--"):
        m = re.fullmatch(r"(--[^=\s]+)(?:=|\s+)(.*)", text, re.DOTALL)
        return f"{m.group(1)}={sbatch_word(_unquoted(m.group(2).strip()))}" if m else text
    m = re.fullmatch(r"(-\w)\s+(.*)", text, re.DOTALL)
    return (
        f"{m.group(1)} {sbatch_word(_unquoted(m.group(2).strip()))}" if m else text
    )  # `-x` / `-xy` as written


def _unquoted(value: str) -> str:
    """A value the user put in one pair of double quotes (`--comment "two words"`), without them."""
    if len(value) >= 2 and value[0] == value[-1] == '"' and '"' not in value[1:-1]:
        return value[1:-1]
    return value


def read_setup(path: str) -> tuple[str, list[str]]:
    """`--setup FILE`: (its absolute path, its lines without a leading `#!`); one line when it
    is missing, unreadable or not text."""
    where = os.path.abspath(path)
    if not os.path.exists(where):
        raise UserError(f"--setup {path}: no such file")
    if not os.path.isfile(where):
        raise UserError(f"--setup {path}: not a file")
    try:
        with open(where, "rb") as f:
            data = f.read()
    except OSError as e:
        raise UserError(f"--setup {path}: cannot read it ({e.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or "\0" in text:
        raise UserError(f"--setup {path}: not a text file (shell lines such as `module load ...` expected)")
    lines = text.splitlines()
    if lines and lines[0].startswith("#!"):
        lines = lines[1:]
    return where, lines


def log_path(job: SlurmJob, job_id: str = "%j") -> str:
    """The job's log (stdout and stderr), absolute."""
    return os.path.join(os.path.abspath(job.log_dir), f"slurm-{job_id}.out")


def header(job: SlurmJob, job_name: str, signal_margin: int | None) -> list[str]:
    """The script's `#SBATCH` options, in the order an admin reads them: what, where, how much,
    the log, the rules of the run, then the user's own. `signal_margin`: seconds before the time
    limit to send SIGUSR1 (None: no limit)."""
    sb = [f"--job-name={job_name}", f"--nodes={job.nodes}", "--ntasks-per-node=1"]
    optional = (
        ("partition", job.partition),
        ("account", job.account),
        ("qos", job.qos),
        ("time", job.time),
        ("cpus-per-task", job.cpus_per_task),
        ("mem", job.mem),
        ("gpus-per-node", job.gpus_per_node),
        ("gres", job.gres),
        ("constraint", job.constraint),
    )
    sb += [f"--{flag}={value}" for flag, value in optional if value]
    if job.exclusive:
        sb.append("--exclusive")  # a benchmark does not share its nodes (--no-exclusive: it may)
    sb += [
        f"--chdir={sbatch_word(os.path.abspath(job.workdir))}",
        f"--output={sbatch_word(log_path(job))}",
        f"--error={sbatch_word(log_path(job))}",  # one log: stdout and stderr in the order they happened
        "--open-mode=append",  # a log is never replaced
        f"--export={job.export}",
        "--no-requeue",  # a run is not started again over its own folder (node failure, preemption)
    ]
    if signal_margin:
        # SIGUSR1 to the workers before the limit, so they stop and record `time_limit`: at the limit
        # itself srun gets SIGTERM and answers it by SIGKILLing its tasks ("forcing job termination").
        sb.append(f"--signal=USR1@{signal_margin}")
    return sb + job.sbatch_args


def setup_block(job: SlurmJob) -> list[str]:
    """The script's set-up lines (--setup), run on the first node before anything else: the
    nodes' launchers, started by srun, inherit the environment they make. `set -u` only after
    them: module and activate scripts read variables that may be unset."""
    if job.setup_file is None:
        return ["set -euo pipefail"]
    return [
        "set -eo pipefail",
        f"# Set-up (--setup {shlex.quote(job.setup_file)}), run here before the job; srun passes its",
        "# environment on to every node's launcher.",
        *job.setup,
        "# End of set-up.",
        "set -u",
    ]
