"""Checking a results folder before anyone trusts its numbers.

``ttabench validate PATH`` (PATH: a results tree, a system/benchmark/division
folder, or one run folder) checks every run folder below PATH:

1. Layout: mllog.txt, config.json, curve.csv and summary.json in the run
   folder; the folder at results/<system>/<benchmark>/<division>/<run-id>
   with results/<system>/system.json; folder names agreeing with the files.
2. Status: summary.json must hold a final status. success and diverged are
   results; failed, interrupted and aborted runs are reported (warnings);
   ``running`` is an unfinished or killed run, which is a failure. A run that
   failed during set-up (no config.json, no curve.csv) is reported with its
   reason, without the compliance checker (its log has only a header); it
   fails nothing else in the tree.
3. Numbers: every entry of summary.json's ``metrics`` is recomputed from
   curve.csv with the run's own threshold spec, target and budget (which must
   equal config.json's) and compared exactly (relative 1e-12: the values are
   copied floats); the throughput and the time breakdown's maxima are
   recomputed from summary.json's own fields. A hand-edited summary fails.
4. Log: the eval_accuracy events of mllog.txt carry the same accuracies,
   training times and sample counts as curve.csv, in the same order; the
   logged seed, benchmark, division, data set and global batch agree with
   summary.json; and the log passes the MLPerf compliance checker
   (mlperf-logging) with ttabench's rules, ``compliance/ttabench_1.0.0``
   (for a run that did not succeed -- diverged, failed, interrupted -- the
   log may end early by nature, so the checker's findings are warnings).
5. Closed division (open-division runs skip this): the model is a reference
   benchmark, the recipe in config.json equals reference_impls.recipe.CLOSED
   number for number (augmentation included), the batch is within the
   recipe's bounds, and the data is real CIFAR-10 -- the synthetic data set
   fails; the CIFAR-10 subset is accepted with a warning, since it is not the
   full benchmark and its numbers are not comparable with full runs.
6. Seeds: recorded, and unique among the runs below PATH that are seeds of
   one experiment (same system, same run configuration apart from the seed
   and output settings). A repeated seed there makes the variance across
   "seeds" fake; the same seed on another configuration (another network,
   worker count, batch) is a fair paired comparison and is allowed.

Every problem is one ``PATH: problem`` line. The functions here read files
and return Problems; they never print or exit. The checks themselves live by
concern: divisions/checks.py (recomputed numbers), divisions/logcheck.py
(mllog.txt and the compliance checker), divisions/rules.py (division rules).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ttabench import UserError
from ttabench.divisions.checks import (
    check_metrics,
    check_summary_numbers,
    check_summary_vs_config,
    run_benchmark,
    same,
    short_json,
)
from ttabench.divisions.logcheck import (
    RULES,
    check_mllog_vs_curve,
    check_mllog_vs_summary,
    compliance_problems,
    read_mllog,
)
from ttabench.divisions.results import (
    ACTIVE_STATES,
    JOB_FILE,
    RUN_FILES,
    STATUSES,
    ReaderError,
    RunPath,
    experiment_key,
    find_job_only_dirs,
    find_run_dirs,
    read_curve,
    read_json,
    safe_name,
    section,
)
from ttabench.divisions.rules import check_closed, check_open

# Re-exported: the checks `validate` is made of, for callers that know it by this module.
__all__ = [
    "RULES",
    "Problem",
    "Result",
    "check_closed",
    "check_metrics",
    "check_mllog_vs_curve",
    "check_open",
    "check_seeds",
    "compliance_problems",
    "experiment_key",
    "same",
    "validate",
]

REPORTED_STATUSES = ("failed", "interrupted", "aborted")  # finished, recorded, not results


@dataclass(frozen=True)
class Problem:
    path: str
    message: str
    warning: bool = False

    def __str__(self) -> str:
        msg = f"warning: {self.message}" if self.warning else self.message
        return f"{self.path}: {msg}"


@dataclass
class Result:
    path: str
    runs: list[str] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def failures(self) -> list[Problem]:
        return [p for p in self.problems if not p.warning]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.warning]

    @property
    def ok(self) -> bool:
        return bool(self.runs or self.statuses) and not self.failures  # statuses: also jobs not done

    def summary_line(self) -> str:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(self.statuses.items()))
        runs = f"{len(self.runs)} run{'s' if len(self.runs) != 1 else ''}"
        warn = f", {len(self.warnings)} warning{'s' if len(self.warnings) != 1 else ''}"
        if self.ok:
            return f"OK: {runs} under {self.path} ({counts}){warn if self.warnings else ''}"
        return (
            f"FAILED: {len(self.failures)} problem{'s' if len(self.failures) != 1 else ''} "
            f"in {runs} under {self.path}"
            + (f" ({counts})" if counts else "")
            + (warn if self.warnings else "")
        )


# --- seeds ------------------------------------------------------------------------------


def check_seeds(seeds: dict[str, object]) -> list[Problem]:
    """Every run's seed must be recorded and different from every other run's (call it with
    the runs of one experiment: the same seed on another configuration is a fair pairing)."""
    by_seed: dict[object, list[str]] = {}
    out = []
    for run, seed in seeds.items():
        if seed is None:
            out.append(Problem(run, "no seed recorded (summary.json seed / config.json resolved.seed)"))
        elif not isinstance(seed, int) or isinstance(seed, bool):
            out.append(Problem(run, f"seed {short_json(seed)} is not an integer"))
        else:
            by_seed.setdefault(seed, []).append(run)
    for seed, runs in by_seed.items():
        for run in runs[1:]:
            out.append(
                Problem(
                    run,
                    f"seed {seed} is also the seed of {runs[0]}, a run of the same "
                    "configuration (seeds must be unique)",
                )
            )
    return out


# --- one run, and a tree ----------------------------------------------------------------


def _read(path: str, reader, problems: list[Problem]):
    try:
        return reader(path)
    except ReaderError as e:  # 'PATH[:LINE]: problem', said once
        problems.append(Problem(e.where, e.problem))
        return None


def _check_status(run_dir: str, summary_path: str, summary: dict) -> list[Problem]:
    """running is a failure; failed, interrupted and aborted are reported; others are unknown."""
    status = summary.get("status")
    if status == "running":
        return [
            Problem(
                summary_path, "incomplete run: status is still 'running' (it never finished, or was killed)"
            )
        ]
    if status in REPORTED_STATUSES:
        why = summary.get("error") or summary.get("stop_reason") or ""
        why = " ".join(str(why).split())[:200]  # one line, whatever the file holds
        text = f"run {status}" + (f" ({why})" if why else "") + ": recorded, not a result"
        return [Problem(run_dir, text, warning=True)]
    if not isinstance(status, str) or status not in STATUSES:
        return [Problem(summary_path, f"unknown status {short_json(status)} (one of {', '.join(STATUSES)})")]
    return []


def _check_summary(path: str, summary: dict, rows: list[dict] | None, config: dict | None) -> list[Problem]:
    """summary.json's numbers against curve.csv, and its description against config.json."""
    status = summary.get("status")
    out: list[str] = []
    m = summary.get("metrics")
    if isinstance(m, dict) and rows is not None:
        out += check_metrics(m, rows, config)
    elif m is None and status not in REPORTED_STATUSES:
        out.append("no metrics block")
    elif m is not None and not isinstance(m, dict):
        out.append(f"metrics is {short_json(m)}, not an object")
    if rows is not None:
        out += check_summary_numbers(summary, rows)
    if config is not None:
        out += check_summary_vs_config(summary, config)
    return [Problem(path, msg) for msg in out]


def _check_log(path: str, events: list[dict], rows, summary, compliance: bool) -> list[Problem]:
    """mllog.txt against curve.csv and summary.json, and the compliance checker's findings."""
    out = []
    if rows is not None:
        out += [Problem(path, msg) for msg in check_mllog_vs_curve(events, rows)]
    if summary is not None:
        out += [Problem(path, msg) for msg in check_mllog_vs_summary(events, summary)]
    if compliance:
        fails, warns = compliance_problems(path)
        # A run that diverged, failed or was interrupted may leave an incomplete log by
        # nature (no evaluation before a NaN at step 1): its findings are warnings.
        # A running run is already a failure above; its log simply has no end yet.
        strict = (summary or {}).get("status") in (None, "success")
        out += [Problem(path, "compliance: " + msg, warning=not strict) for msg in fails]
        out += [Problem(path, "compliance: " + msg, warning=True) for msg in warns]
    return out


def _check_division(run_dir: str, config_path: str, summary, config) -> list[Problem]:
    division = (summary or {}).get("division") or section(config, "config").get("division")
    if division == "closed" and config is not None:
        return [Problem(config_path, msg, warning=w) for msg, w in check_closed(config)]
    if division == "open" and config is not None:
        return [Problem(config_path, msg) for msg in check_open(config)]
    if division not in ("closed", "open") and (summary or config):
        # a failed run's folder may not say (one made before ttabench recorded it there)
        reported = (summary or {}).get("status") in REPORTED_STATUSES
        return [
            Problem(run_dir, f"division {short_json(division)} is neither closed nor open", warning=reported)
        ]
    return []


def check_run(run_dir: str, compliance: bool = True) -> tuple[list[Problem], dict | None, dict | None]:
    """All per-run checks: (problems, summary, config)."""
    P: list[Problem] = []
    f = {name: os.path.join(run_dir, name) for name in RUN_FILES}
    summary = _read(f["summary.json"], read_json, P) if os.path.isfile(f["summary.json"]) else None
    status = (summary or {}).get("status")
    for name, path in f.items():
        if not os.path.isfile(path):
            # A run that failed early keeps what it wrote (by design); only then is a gap expected.
            P.append(
                Problem(
                    path,
                    "missing (a run folder holds " + ", ".join(RUN_FILES) + ")",
                    warning=status in REPORTED_STATUSES and name != "summary.json",
                )
            )
    config = _read(f["config.json"], read_json, P) if os.path.isfile(f["config.json"]) else None
    rows = _read(f["curve.csv"], read_curve, P) if os.path.isfile(f["curve.csv"]) else None
    events = None
    if os.path.isfile(f["mllog.txt"]):
        events, bad = read_mllog(f["mllog.txt"])
        P += [Problem(f["mllog.txt"], m) for m in bad]
    if summary is not None:
        P += _check_status(run_dir, f["summary.json"], summary)
        P += _check_summary(f["summary.json"], summary, rows, config)
    # A run that failed during set-up (no config.json, no curve) logged its header only:
    # the status line above says what happened; the compliance checker has nothing to check.
    setup_failure = status in REPORTED_STATUSES and config is None and rows is None
    if events is not None:
        P += _check_log(f["mllog.txt"], events, rows, summary, compliance and not setup_failure)
    P += _check_division(run_dir, f["config.json"], summary, config)
    P += check_layout(run_dir, summary, config)
    return P, summary, config


def check_layout(run_dir: str, summary: dict | None, config: dict | None) -> list[Problem]:
    """results/<system>/<benchmark>/<division>/<run-id>, names agreeing with the files."""
    out = []
    where = RunPath.parse(os.path.abspath(run_dir))
    s, c = summary or {}, config or {}
    division = s.get("division") or section(c, "config").get("division")
    benchmark = s.get("benchmark") or run_benchmark(c)
    system = section(c, "resolved").get("system")
    division, benchmark, system = (v if isinstance(v, str) else None for v in (division, benchmark, system))
    if division and where.division != division:
        out.append(
            Problem(
                run_dir,
                f"a {division}-division run must be in a folder named {division}, "
                f"not {where.division!r} "
                "(results/<system>/<benchmark>/<division>/<run-id>)",
            )
        )
    if benchmark and where.benchmark != safe_name(benchmark):
        out.append(
            Problem(
                run_dir,
                f"a {benchmark} run must be in a folder named {safe_name(benchmark)}, not {where.benchmark!r}",
            )
        )
    if system and where.system != safe_name(system):
        out.append(
            Problem(run_dir, f"system {system!r} (config.json) but the system folder is {where.system!r}")
        )
    return out


def check_system_dir(system_dir: str) -> list[Problem]:
    path = os.path.join(system_dir, "system.json")
    if not os.path.isfile(path):
        return [Problem(path, "missing (every results/<system>/ folder has a system.json)")]
    problems: list[Problem] = []
    _read(path, read_json, problems)
    return problems


def check_job_only(job_dir: str, state: str | None) -> Problem:
    """A submitted job's folder without a run file: a warning that says what the job is."""
    try:
        job = read_json(os.path.join(job_dir, JOB_FILE))
    except UserError:
        job = {}
    name = f"job {job.get('job_id', '?')}"
    log = f"; its log: {job['log']}" if job.get("log") else ""
    if state in ACTIVE_STATES:
        return Problem(job_dir, f"{name} is {state.lower()}: no run recorded yet", warning=True)
    if state is None:  # the scheduler was not asked (not on its login node)
        why = "pending, cancelled before it started, or failed before training"
    else:
        why = "ended" + (f" {state}" if state != "ENDED" else "") + " before training"
    return Problem(job_dir, f"{name}: no run recorded ({why}){log}", warning=True)


def validate(path: str, compliance: bool = True, jobs: dict[str, str | None] | None = None) -> Result:
    """Check every run folder at or below `path`. `jobs`: the scheduler's state of the job
    behind a run folder or a submitted job's folder (run folder -> "RUNNING", ...), where
    it is known; a run whose job is still active is reported, not checked."""
    if not os.path.exists(path):
        raise UserError(f"not found: {path}")
    jobs = jobs or {}
    result = Result(path)
    for job_dir in find_job_only_dirs(path) if os.path.isdir(path) else []:
        result.problems.append(check_job_only(job_dir, jobs.get(job_dir)))
        state = jobs.get(job_dir)
        kind = state.lower() if state in ACTIVE_STATES else "not started"
        result.statuses[kind] = result.statuses.get(kind, 0) + 1
    active = [d for d in find_run_dirs(path) if jobs.get(d) in ACTIVE_STATES]
    for run_dir in active:
        result.problems.append(
            Problem(run_dir, f"its job is still {jobs[run_dir].lower()}: checked once it ends", warning=True)
        )
        result.statuses["running"] = result.statuses.get("running", 0) + 1
    result.runs = [d for d in find_run_dirs(path) if d not in active]
    if not result.runs and (active or result.problems):
        return result
    if not result.runs:
        result.problems.append(
            Problem(path, "no run folders found (a run folder holds " + ", ".join(RUN_FILES) + ")")
        )
        return result
    seeds: dict[str, dict[str, object]] = {}  # experiment -> run -> seed
    system_dirs: list[str] = []
    for run_dir in result.runs:
        problems, summary, config = check_run(run_dir, compliance=compliance)
        result.problems += problems
        status = (summary or {}).get("status")
        result.statuses[str(status)] = result.statuses.get(str(status), 0) + 1
        seed = (summary or {}).get("seed")
        if seed is None:
            seed = section(config, "resolved").get("seed")
        if seed is not None or status not in REPORTED_STATUSES:  # an early failure may have none
            seeds.setdefault(experiment_key(run_dir, summary, config), {})[run_dir] = seed
        system_dir = RunPath.parse(run_dir).system_dir
        if os.path.abspath(system_dir) not in system_dirs:
            system_dirs.append(os.path.abspath(system_dir))
            result.problems += check_system_dir(system_dir)
    for runs in seeds.values():
        result.problems += check_seeds(runs)
    return result
