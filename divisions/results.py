"""The results folder: its layout, atomic writes, and readers for its files.

    results/<system>/<benchmark>/<division>/<run-id>/
        mllog.txt      :::MLLOG lines (mlperf-logging), appended line by line
        config.json    everything needed to re-run
        curve.csv      one row per evaluation
        summary.json   status, metrics and time breakdown
    results/<system>/system.json

Every JSON/CSV file is written whole to a temporary file in the same folder
and renamed over the target, so a reader never sees half a file; the curve
is always written before the summary that is computed from it. Run ids are
created with an exclusive mkdir, so two runs started at the same moment
never share a folder.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import secrets
import time
from dataclasses import dataclass

from ttabench import UserError

CURVE_HEADER = ("epoch", "step", "samples", "train_time_s", "total_time_s", "accuracy", "loss")
RUN_FILES = ("mllog.txt", "config.json", "curve.csv", "summary.json")
CHECKPOINT_FILE = "checkpoint.pt"  # written by launch/worker/checkpoint.py with --checkpoint-every
STATUSES = ("running", "success", "failed", "diverged", "interrupted", "aborted")
# Marks a folder written by `report --html`: it holds copies of run files, which are not runs.
REPORT_SITE_MARK = ".ttabench-report"
_SAFE = re.compile(r"[^A-Za-z0-9._+-]+")


class ReaderError(UserError):
    """A results file that cannot be read: the file, the line (when there is one) and the
    problem, kept apart so that `validate` can report them without re-parsing the message."""

    def __init__(self, path: str, problem: str, line: int | None = None, message: str | None = None):
        self.path, self.problem, self.line = path, problem, line
        where = path if line is None else f"{path}:{line}"
        super().__init__(message or f"{where}: {problem}")

    @property
    def where(self) -> str:
        return self.path if self.line is None else f"{self.path}:{self.line}"


def safe_name(name: str) -> str:
    """A string usable as one path component (system names come from hostnames)."""
    return _SAFE.sub("-", name).strip("-.") or "unnamed"


def atomic_write_text(path: str, text: str) -> None:
    """Write `text` to `path` so that readers see the old file or the new one, never a mix."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str, data: bytes, what: str = "results file") -> None:
    """Write `data` whole to a temporary file beside `path`, then rename it over `path`.

    On any failure the temporary file is removed and `path` keeps its old content; a
    failure of the file system (disk full, read-only, permissions) is a UserError naming
    `what`, the file and the reason, in one line.
    """
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise UserError(f"cannot write {what} {path}: {e.strerror or e}") from None
        raise


def atomic_write_json(path: str, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


@dataclass(frozen=True)
class RunPath:
    """The one place that knows ``<root>/<system>/<benchmark>/<division>/<run-id>``:
    it makes fresh run folders, names the parts of an existing one, and finds them."""

    root: str
    system: str
    benchmark: str
    division: str
    run_id: str

    @property
    def path(self) -> str:
        return os.path.join(self.root, self.system, self.benchmark, self.division, self.run_id)

    @property
    def system_dir(self) -> str:
        """results/<system>/, the folder that holds system.json."""
        return os.path.join(self.root, self.system)

    @classmethod
    def parse(cls, run_dir: str) -> RunPath:
        """The parts of a run folder's path; a relative path stays relative when it names all
        five parts, and a part above the file system root is '?'."""
        parts = os.path.normpath(run_dir).split(os.sep)
        if len(parts) < 5 or ".." in parts[-4:]:
            parts = os.path.abspath(run_dir).split(os.sep)
        *above, system, benchmark, division, run_id = ["?"] * 4 + parts
        root = os.sep.join(above[4:]) or os.sep
        return cls(root, system, benchmark, division, run_id)

    @classmethod
    def new(cls, root: str, system: str, benchmark: str, division: str) -> RunPath:
        """Create a fresh run folder with an exclusive mkdir: never reuses an existing one."""
        parent = os.path.join(root, safe_name(system), safe_name(benchmark), division)
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create results folder {parent}: {e.strerror}") from None
        for _ in range(100):
            run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)
            try:
                os.mkdir(os.path.join(parent, run_id))
            except FileExistsError:
                continue
            except OSError as e:
                raise UserError(f"cannot create run folder in {parent}: {e.strerror}") from None
            return cls(root, safe_name(system), safe_name(benchmark), division, run_id)
        raise UserError(f"could not find a free run id in {parent}")

    @staticmethod
    def find(path: str) -> list[str]:
        """The run folders at or below `path`, sorted; a run folder is not searched further."""
        return find_run_dirs(path)


def new_run_dir(results_root: str, system: str, benchmark: str, division: str) -> str:
    """Create and return a fresh run folder; never reuses an existing one."""
    return RunPath.new(results_root, system, benchmark, division).path


def format_curve(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CURVE_HEADER)
    for r in rows:
        w.writerow([_fmt(r[k]) for k in CURVE_HEADER])
    return buf.getvalue()


def _fmt(v) -> str:
    if isinstance(v, float):
        return repr(v)  # round-trips exactly: an accuracy equal to a threshold stays equal
    return str(v)


def read_curve(path: str) -> list[dict]:
    """Read curve.csv (or a run folder holding one) -> rows with typed values.

    Raises UserError naming the file and line for anything malformed.
    """
    if os.path.isdir(path):
        path = os.path.join(path, "curve.csv")
    try:
        with open(path, encoding="utf-8", newline="") as f:
            text = f.read()
    except FileNotFoundError:
        raise ReaderError(path, "not found", message=f"curve file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        why = _short(e, 200)
        raise ReaderError(path, why, message=f"cannot read curve file {path}: {why}") from None
    reader = csv.reader(io.StringIO(text), strict=True)
    try:
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != CURVE_HEADER:
            raise ReaderError(path, f"not a ttabench curve (header must be {','.join(CURVE_HEADER)})")
        rows, last_time = [], -math.inf
        for fields in reader:
            if not fields:
                continue
            row = _curve_row(path, reader.line_num, fields)
            if row["train_time_s"] < last_time:
                raise ReaderError(path, "train_time_s goes backwards", reader.line_num)
            last_time = row["train_time_s"]
            rows.append(row)
    except csv.Error as e:  # an unterminated quote, a field over csv's size limit
        raise ReaderError(path, f"not valid CSV ({e})", reader.line_num) from None
    return rows


# A training time beyond this (about 32 years) is a corrupt file, not a run; refusing it keeps
# every sum and mean of times far from float overflow.
MAX_TIME_S = 1e9


def _curve_row(path: str, lineno: int, fields: list[str]) -> dict:
    if len(fields) != len(CURVE_HEADER):
        raise ReaderError(path, f"expected {len(CURVE_HEADER)} fields, got {len(fields)}", lineno)
    try:
        row = {
            "epoch": float(fields[0]),
            "step": int(fields[1]),
            "samples": int(fields[2]),
            "train_time_s": float(fields[3]),
            "total_time_s": float(fields[4]),
            "accuracy": float(fields[5]),
            "loss": float(fields[6]),  # NaN or inf is a diverged run's loss, recorded as it was
        }
    except ValueError as e:
        raise ReaderError(path, f"bad value ({_short(e)})", lineno) from None
    given = dict(zip(CURVE_HEADER, fields))
    for key in ("train_time_s", "total_time_s"):
        if not (math.isfinite(row[key]) and 0 <= row[key] <= MAX_TIME_S):
            raise ReaderError(
                path,
                f"{key} must be a finite number of seconds in 0..{MAX_TIME_S:g}, got {_short(given[key])}",
                lineno,
            )
    if not (math.isfinite(row["epoch"]) and row["epoch"] >= 0):
        raise ReaderError(path, f"epoch must be a finite number >= 0, got {_short(given['epoch'])}", lineno)
    for key in ("step", "samples"):
        if row[key] < 0:
            raise ReaderError(path, f"{key} must be >= 0, got {row[key]}", lineno)
    if not (math.isfinite(row["accuracy"]) and 0 <= row["accuracy"] <= 1):
        raise ReaderError(
            path, f"accuracy must be a fraction in 0..1, got {_short(given['accuracy'])}", lineno
        )
    return row


def _short(x, limit: int = 60) -> str:
    """A value or error message for a one-line error: no newlines, at most `limit` characters."""
    text = " ".join(str(x).split())
    return text if len(text) <= limit else text[:limit] + "..."


def curve_points(rows: list[dict]) -> list[tuple[float, float]]:
    return [(r["train_time_s"], r["accuracy"]) for r in rows]


def read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except FileNotFoundError:
        raise ReaderError(path, "not found", message=f"file not found: {path}") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:  # ValueError: bad JSON, huge integers
        why = _short(e, 200)
        raise ReaderError(path, why, message=f"cannot read {path}: {why}") from None
    except RecursionError:
        why = "JSON nested too deeply"
        raise ReaderError(path, why, message=f"cannot read {path}: {why}") from None
    if not isinstance(obj, dict):
        raise ReaderError(path, "expected a JSON object")
    return obj


def section(obj, key: str) -> dict:
    """obj[key] when it is a JSON object, else {}: files from elsewhere may hold anything."""
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, dict) else {}


def number(value) -> float | int | None:
    """A finite JSON number (not a boolean), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return value if math.isfinite(value) else None
    except OverflowError:  # an integer too large for a float
        return None


def is_run_dir(path: str) -> bool:
    """A run folder holds at least one of the run files (a failed run may lack some)."""
    return os.path.isdir(path) and any(os.path.isfile(os.path.join(path, f)) for f in RUN_FILES)


JOB_FILE = "submit.json"  # written by `ttabench submit` beside job.sbatch, before the job starts
# Slurm's states of a job that has not ended (squeue's %T).
ACTIVE_STATES = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED")


def is_job_only_dir(path: str) -> bool:
    """A submitted job's folder that holds no run file yet: pending, starting, or a job that
    ended before training (cancelled while pending, failed on start)."""
    return os.path.isfile(os.path.join(path, JOB_FILE)) and not is_run_dir(path)


def find_job_only_dirs(path: str) -> list[str]:
    """The folders at or below `path` of submitted jobs that hold no run file, sorted."""
    if not os.path.isdir(path):
        raise UserError(f"not a folder: {path}")
    found = []
    for folder, dirs, _files in os.walk(path):
        if is_job_only_dir(folder):
            found.append(folder)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not is_run_dir(os.path.join(folder, d)))
    return sorted(found)


def find_run_dirs(path: str) -> list[str]:
    """The run folders at or below `path`, sorted; a run folder is not searched further."""
    if not os.path.isdir(path):
        raise UserError(f"not a folder: {path}")
    if is_run_dir(path):
        return [path]
    found = []
    for folder, dirs, _files in os.walk(path):
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith(".") and not os.path.isfile(os.path.join(folder, d, REPORT_SITE_MARK))
        )
        keep = []
        for d in dirs:
            sub = os.path.join(folder, d)
            if is_run_dir(sub):
                found.append(sub)
            else:
                keep.append(d)
        dirs[:] = keep
    return sorted(found)


# Fields of config.json's `config` that do not change what is trained.
_NOT_EXPERIMENT = ("seed", "results_dir", "run_dir", "progress", "save_model", "system", "resume")


# config.json's `config` settings of the link between workers: a run of one worker crosses none.
_NETWORK_SETTINGS = ("network", "bandwidth", "latency")


def single_worker(config: dict | None) -> bool:
    """Whether config.json describes a run of one worker (resolved.world_size, else the flags)."""

    def count(v):
        return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None

    world = count(section(config, "resolved").get("world_size"))
    if world is None:
        cfg = section(config, "config")
        workers = count(cfg.get("workers"))
        world = None if workers is None else workers * (count(cfg.get("nnodes")) or 1)
    return world == 1


def experiment_key(run_dir: str, summary: dict | None, config: dict | None) -> str:
    """What makes runs seeds of one experiment: the results tree they were written to (the
    folder above <system>: one submission), the system and the run configuration (config.json's
    `config` without the seed and output settings; the data folder by its recorded SHA-256). Repeated timing measurements of one seed
    kept in separate trees (e.g. results/predict/runs/<point>-r<k>/) are not seed collisions."""
    return json.dumps(experiment_parts(run_dir, summary, config), sort_keys=True, default=str)


def experiment_parts(run_dir: str, summary: dict | None, config: dict | None) -> list:
    """experiment_key's parts: [results tree, system, {setting: value}]."""
    where = RunPath.parse(os.path.abspath(run_dir))
    system = section(config, "resolved").get("system") or where.system
    cfg = (config or {}).get("config")
    if isinstance(cfg, dict):
        # A setting left unset (None) and one a run from an older version does not record are
        # the same default.
        what = {k: v for k, v in cfg.items() if k not in _NOT_EXPERIMENT and v is not None}
        if what.get("algorithm") == "allreduce":  # the default, and what runs before --algorithm did
            del what["algorithm"]
        # The data by its fingerprint, not by the path it was read from (../shared/x and
        # ../../shared/x, or two machines' folders, are the same data set).
        sha = section(config, "data").get("sha256")
        if sha and "data_dir" in what:
            what["data_dir"] = f"sha256:{sha}"
        # A really shaped link (netlab) is set outside the run's flags.
        shaping = section(section(config, "resolved"), "network_shaping")
        if shaping:
            what["network_shaping"] = {k: shaping.get(k) for k in ("rate", "delay", "hosts")}
        if single_worker(config):  # no link crossed: runs of one worker group whatever was asked
            for k in (*_NETWORK_SETTINGS, "network_shaping"):
                what.pop(k, None)
    else:
        what = {k: (summary or {}).get(k) for k in ("benchmark", "division", "dataset", "world_size")}
    return [where.root, system, what]
