"""Checking a results folder before anyone trusts its numbers.

``ttabench validate PATH`` (PATH: a results tree, a system/benchmark/division
folder, or one run folder) checks every run folder below PATH:

1. Layout: mllog.txt, config.json, curve.csv and summary.json in the run
   folder; the folder at results/<system>/<benchmark>/<division>/<run-id>
   with results/<system>/system.json; folder names agreeing with the files.
2. Status: summary.json must hold a final status. success and diverged are
   results; failed, interrupted and aborted runs are reported (warnings);
   ``running`` is an unfinished or killed run, which is a failure.
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
and return Problems; they never print or exit.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field

from ttabench import UserError
from ttabench.divisions import metrics
from ttabench.divisions.results import (
    RUN_FILES,
    STATUSES,
    find_run_dirs,
    number,
    read_curve,
    read_json,
    safe_name,
    section,
)

RULES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "compliance", "ttabench_1.0.0")
RULES = os.path.join(RULES_DIR, "common.yaml")
REPORTED_STATUSES = ("failed", "interrupted", "aborted")  # finished, recorded, not results
FULL_CIFAR10 = (50000, 10000)
REL_TOL = 1e-12


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
        return bool(self.runs) and not self.failures

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


# --- comparing values exactly -----------------------------------------------------------


def same(a, b) -> bool:
    """Equal, with floats allowed to differ in the last bits only (relative 1e-12)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if a == b:
            return True
        try:
            return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=0.0)
        except OverflowError:  # an integer beyond float range (a hand-edited file) equals no float
            return False
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def first_difference(name: str, recorded, expected) -> str:
    """'name[i] is X, recomputed Y' for the first element that differs."""
    if isinstance(recorded, list) and isinstance(expected, list) and len(recorded) == len(expected):
        for i, (x, y) in enumerate(zip(recorded, expected)):
            if not same(x, y):
                return first_difference(f"{name}[{i}]", x, y)
    return f"{name} is {json.dumps(recorded)}, recomputed {json.dumps(expected)}"


# --- metrics ----------------------------------------------------------------------------


def check_metrics(recorded: dict, rows: list[dict], config: dict | None) -> list[str]:
    """Problems with summary.json's ``metrics`` block (recorded) against curve.csv rows."""
    out = []
    spec, target, budget = (recorded.get("threshold_spec"), recorded.get("target"), recorded.get("budget_s"))
    cfg = section(config, "config")
    for key, cfg_key in (("threshold_spec", "thresholds"), ("target", "target"), ("budget_s", "time_budget")):
        if cfg_key in cfg and not same(recorded.get(key), cfg[cfg_key]):
            out.append(
                f"metrics.{key} is {json.dumps(recorded.get(key))}, config.json's "
                f"{cfg_key} is {json.dumps(cfg[cfg_key])}"
            )
    wrong = [
        f"metrics.{key} is {_dumps(value)}, not {kind}"
        for key, value, ok, kind in (
            ("threshold_spec", spec, spec is None or isinstance(spec, str), "a LOW:HIGH:STEP string"),
            ("target", target, target is None or number(target) is not None, "a number"),
            ("budget_s", budget, budget is None or number(budget) is not None, "a number"),
        )
        if not ok
    ]
    if wrong:
        return out + wrong + ["metrics cannot be recomputed"]
    try:
        expected = metrics.summary_block(rows, spec, target, budget)
    except UserError as e:
        return out + [f"metrics cannot be recomputed: {e}"]
    for key in recorded:
        if key not in expected:
            out.append(f"metrics.{key} is not a metric ttabench computes (cannot be recomputed)")
    for key, value in expected.items():
        if key not in recorded:
            out.append(f"metrics.{key} is missing (curve.csv gives {json.dumps(value)})")
        elif not same(recorded[key], value):
            out.append(first_difference(f"metrics.{key}", recorded[key], value))
    return out


def check_summary_numbers(summary: dict, rows: list[dict]) -> list[str]:
    """The summary's own derived numbers, and their agreement with the last evaluation."""
    out = []
    for key in ("samples", "train_time_s", "steps", "throughput_img_s", "eval_time_s"):
        if summary.get(key) is not None and number(summary[key]) is None:
            out.append(f"{key} is {_dumps(summary[key])}, not a finite number")
    samples, train_s = number(summary.get("samples")), number(summary.get("train_time_s"))
    if "throughput_img_s" in summary and samples is not None and train_s is not None:
        try:
            expected = samples / train_s if train_s > 0 else None
        except OverflowError:
            expected = None
        if not same(summary["throughput_img_s"], expected):
            out.append(first_difference("throughput_img_s", summary["throughput_img_s"], expected))
    tb = summary.get("time_breakdown")
    if tb is not None and not isinstance(tb, dict):
        out.append(f"time_breakdown is {_dumps(tb)}, not an object")
    elif tb and tb.get("per_rank"):
        per_rank, worst = tb["per_rank"], tb.get("max_over_ranks") or {}
        if not (isinstance(per_rank, list) and all(isinstance(r, dict) for r in per_rank)):
            out.append("time_breakdown.per_rank is not a list of objects")
        elif not isinstance(worst, dict):
            out.append(f"time_breakdown.max_over_ranks is {_dumps(worst)}, not an object")
        else:
            for k in worst:
                vals = [number(r.get(k)) for r in per_rank]
                if any(v is None for v in vals):
                    out.append(
                        f"time_breakdown.max_over_ranks.{k} has no per-rank values "
                        "(or one that is not a number)"
                    )
                elif not same(worst[k], max(vals)):
                    out.append(first_difference(f"time_breakdown.max_over_ranks.{k}", worst[k], max(vals)))
            if "eval_time_s" in summary and not same(summary["eval_time_s"], worst.get("eval_s")):
                out.append(first_difference("eval_time_s", summary["eval_time_s"], worst.get("eval_s")))
    if rows:
        last = rows[-1]
        for key, row_key in (("train_time_s", "train_time_s"), ("samples", "samples"), ("steps", "step")):
            v = number(summary.get(key))
            if v is not None and v < last[row_key] * (1 - REL_TOL):
                out.append(f"{key} is {v}, less than curve.csv's last evaluation ({last[row_key]})")
    return out


def _dumps(value, limit: int = 60) -> str:
    """A JSON value for a one-line problem: compact, cut at `limit` characters."""
    text = json.dumps(value)
    return text if len(text) <= limit else text[:limit] + "..."


# --- mllog ------------------------------------------------------------------------------


def read_mllog(path: str) -> tuple[list[dict], list[str]]:
    """The events of mllog.txt and a problem for each line that is not an :::MLLOG JSON event."""
    events, problems = [], []
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        return [], [f"cannot read: {e}"]
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if not line.startswith(":::MLLOG "):
            problems.append(f"line {lineno} is not an :::MLLOG event")
            continue
        try:
            ev = json.loads(line[len(":::MLLOG ") :])
        except json.JSONDecodeError as e:
            problems.append(f"line {lineno}: bad JSON ({e.msg})")
            continue
        except (ValueError, RecursionError) as e:  # an integer too long, nesting too deep
            problems.append(f"line {lineno}: bad JSON ({type(e).__name__})")
            continue
        if not isinstance(ev, dict) or "key" not in ev:
            problems.append(f"line {lineno}: not an mllog event object")
            continue
        events.append(ev)
    return events, problems


def check_mllog_vs_curve(events: list[dict], rows: list[dict]) -> list[str]:
    """curve.csv and the eval_accuracy events must be the same evaluations, in order."""
    evals = [e for e in events if e.get("key") == "eval_accuracy"]
    out = []
    if len(evals) != len(rows):
        out.append(f"{len(evals)} eval_accuracy events, but curve.csv has {len(rows)} evaluations")
    for i, (ev, row) in enumerate(zip(evals, rows), start=1):
        md = section(ev, "metadata")
        if not same(ev.get("value"), row["accuracy"]):
            out.append(
                f"evaluation {i}: eval_accuracy {ev.get('value')!r}, curve.csv accuracy {row['accuracy']!r}"
            )
        for key in ("train_time_s", "samples"):
            if key in md and not same(md[key], row[key]):
                out.append(f"evaluation {i}: eval_accuracy {key} {md[key]!r}, curve.csv {row[key]!r}")
    return out


def check_mllog_vs_summary(events: list[dict], summary: dict) -> list[str]:
    values: dict[str, list] = {}
    for e in events:
        if isinstance(e.get("key"), str):
            values.setdefault(e["key"], []).append(e.get("value"))
    out = []
    for log_key, sum_key in (
        ("seed", "seed"),
        ("submission_benchmark", "benchmark"),
        ("submission_division", "division"),
        ("dataset", "dataset"),
        ("global_batch_size", "global_batch"),
    ):
        if sum_key not in summary or log_key not in values:
            continue  # a missing key is the compliance checker's finding
        if not all(same(v, summary[sum_key]) for v in values[log_key]):
            out.append(
                f"{log_key} logged as {_dumps(values[log_key][0])}, summary.json "
                f"says {_dumps(summary[sum_key])}"
            )
    return out


def compliance_problems(mllog_path: str, rules: str = RULES) -> tuple[list[str], list[str]]:
    """Run the MLPerf compliance checker in-process: (failures, warnings), one line each."""
    from mlperf_logging.compliance_checker import mlp_compliance, mlp_parser

    ruleset = mlp_compliance.get_parser().get_default("ruleset")
    checker = mlp_compliance.make_checker("training", ruleset, quiet=False, werror=False)
    # The checker keeps its queue of rule files in a module global; start it empty.
    mlp_compliance.enqueued_configs.clear()
    try:
        loglines, errors = mlp_parser.parse_file(mllog_path, ruleset=ruleset)
        failures = [f"unparsable log line: {line[:80]} ({err})" for line, err in errors]
        checker.check_loglines(loglines, os.path.abspath(rules))
    except Exception as e:  # the checker executes the rules' code; any crash is a finding
        return [f"compliance checker failed: {type(e).__name__}: {e}"], []
    finally:
        mlp_compliance.enqueued_configs.clear()
    failures += [_one_line(m) for m in [*checker.overwritable.values(), *checker.not_overwritable]]
    return failures, [_one_line(m) for m in checker.warnings.values()]


def _one_line(message: str) -> str:
    lines = [" ".join(ln.split()) for ln in message.strip().splitlines() if ln.strip()]
    if not lines:
        return "compliance check failed"
    if lines[0].startswith("failed test:"):  # an END check of the rules
        return f"at the end of the log, {lines[0]}"
    test = next((ln for ln in lines[1:] if ln.startswith("failed test:")), None)
    if test:
        return f"{lines[0].rstrip(':')}: {test}"
    if lines[0].startswith("Failed executing") and len(lines) > 1:
        return f"{lines[0].rstrip(':')}: {lines[1]}"
    return lines[0]


# --- closed division --------------------------------------------------------------------


def check_closed(config: dict) -> list[tuple[str, bool]]:
    """Broken closed-division rules as (message, is_warning), from config.json alone."""
    from ttabench.reference_impls.recipe import BENCHMARKS, CLOSED, PRECISIONS

    out: list[tuple[str, bool]] = []
    model, cfg, resolved = section(config, "model"), section(config, "config"), section(config, "resolved")
    name = model.get("name")
    if not isinstance(name, str) or name not in BENCHMARKS:
        out.append(
            (f"closed division: model {name!r} is not a reference benchmark ({', '.join(BENCHMARKS)})", False)
        )
    else:
        depth, version = BENCHMARKS[name]
        if (model.get("depth"), model.get("version")) != (depth, version):
            out.append(
                (
                    f"closed division: model {name} must be depth {depth} v{version}, config.json "
                    f"says depth {model.get('depth')} v{model.get('version')}",
                    False,
                )
            )
        if cfg.get("benchmark") not in (None, name):
            out.append((f"closed division: model {name} but benchmark {cfg.get('benchmark')}", False))
    recipe = config.get("recipe")
    reference = CLOSED.to_dict()
    if not isinstance(recipe, dict):
        out.append(("closed division: config.json has no recipe", False))
    else:
        for key, want in reference.items():
            if key not in recipe:
                out.append(
                    (
                        f"closed division: recipe {key} missing (the reference recipe says "
                        f"{json.dumps(want)})",
                        False,
                    )
                )
            elif not _exactly(recipe[key], want):
                what = "augmentation" if key == "augmentation" else f"recipe {key}"
                out.append(
                    (
                        f"closed division: {what} is {json.dumps(recipe[key])}, the reference "
                        f"recipe says {json.dumps(want)}",
                        False,
                    )
                )
        for key in recipe:
            if key not in reference:
                out.append(
                    (f"closed division: recipe has {key!r}, which the reference recipe does not have", False)
                )
    data = section(config, "data")
    if data.get("synthetic") is not False:
        out.append(
            (
                "closed division: trained on synthetic data (never a closed-division result; "
                "use real CIFAR-10)"
                if data.get("synthetic")
                else "closed division: config.json does not say the data was real (data.synthetic)",
                False,
            )
        )
    elif data.get("name") == "cifar10-subset":
        out.append(
            (
                f"closed division: trained on the CIFAR-10 subset ({data.get('train_size')} train / "
                f"{data.get('test_size')} test images), not the full benchmark "
                f"({FULL_CIFAR10[0]} / {FULL_CIFAR10[1]}): not comparable with full runs",
                True,
            )
        )
    elif data.get("name") != "cifar10":
        out.append((f"closed division: data set {data.get('name')!r} is not CIFAR-10", False))
    elif (data.get("train_size"), data.get("test_size")) != FULL_CIFAR10:
        out.append(
            (
                f"closed division: CIFAR-10 with {data.get('train_size')} train / "
                f"{data.get('test_size')} test images, the full set has {FULL_CIFAR10[0]} / "
                f"{FULL_CIFAR10[1]}",
                False,
            )
        )
    batch, world = cfg.get("batch_size"), resolved.get("world_size")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (batch, world)):
        out.append(("closed division: config.json lacks config.batch_size or resolved.world_size", False))
    else:
        broken = CLOSED.check_batch(batch, world)
        if broken:
            out.append((f"closed division: {broken}", False))
        if resolved.get("global_batch") not in (None, batch * world):
            out.append(
                (
                    f"closed division: global batch {resolved.get('global_batch')} is not "
                    f"{batch} x {world} workers",
                    False,
                )
            )
        elif number(resolved.get("peak_lr")) is not None and not same(
            resolved["peak_lr"], CLOSED.peak_lr(batch * world)
        ):
            out.append(
                (
                    f"closed division: peak learning rate {resolved['peak_lr']}, the recipe gives "
                    f"{CLOSED.peak_lr(batch * world)} for global batch {batch * world}",
                    False,
                )
            )
    precision = resolved.get("precision", cfg.get("precision"))
    if precision is not None and (not isinstance(precision, str) or precision not in PRECISIONS):
        out.append(
            (
                f"closed division: precision {precision!r} is not one the recipe allows "
                f"({', '.join(PRECISIONS)})",
                False,
            )
        )
    return out


def _exactly(a, b) -> bool:
    """Recipe numbers must be equal, not close (JSON turns the tuple of decay epochs into a list)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_exactly(x, y) for x, y in zip(a, b))
    return a == b


# --- seeds ------------------------------------------------------------------------------

# Fields of config.json's `config` that do not change what is trained.
_NOT_EXPERIMENT = ("seed", "results_dir", "run_dir", "progress", "save_model", "system", "resume")


def experiment_key(run_dir: str, summary: dict | None, config: dict | None) -> str:
    """What makes runs seeds of one experiment: the system and the run configuration
    (config.json's `config` without the seed and output settings)."""
    system = section(config, "resolved").get("system") or os.path.basename(
        os.path.normpath(os.path.join(os.path.abspath(run_dir), os.pardir, os.pardir, os.pardir))
    )
    cfg = (config or {}).get("config")
    if isinstance(cfg, dict):
        what = {k: v for k, v in cfg.items() if k not in _NOT_EXPERIMENT}
        # A really shaped link (netlab) is set outside the run's flags.
        shaping = section(section(config, "resolved"), "network_shaping")
        if shaping:
            what["network_shaping"] = {k: shaping.get(k) for k in ("rate", "delay", "hosts")}
    else:
        what = {k: (summary or {}).get(k) for k in ("benchmark", "division", "dataset", "world_size")}
    return json.dumps([system, what], sort_keys=True, default=str)


def check_seeds(seeds: dict[str, object]) -> list[Problem]:
    """Every run's seed must be recorded and different from every other run's (call it with
    the runs of one experiment: the same seed on another configuration is a fair pairing)."""
    by_seed: dict[object, list[str]] = {}
    out = []
    for run, seed in seeds.items():
        if seed is None:
            out.append(Problem(run, "no seed recorded (summary.json seed / config.json resolved.seed)"))
        elif not isinstance(seed, int) or isinstance(seed, bool):
            out.append(Problem(run, f"seed {_dumps(seed)} is not an integer"))
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
    except UserError as e:
        msg = str(e)
        where = path
        line = re.match(re.escape(path) + r":(\d+): ", msg)
        if line:  # 'PATH:LINE: problem', said once
            where, msg = f"{path}:{line[1]}", msg[line.end() :]
        for prefix in (f"{path}: ", "file not found: ", f"cannot read {path}: "):
            if msg.startswith(prefix):
                msg = msg[len(prefix) :]
        problems.append(Problem(where, msg))
        return None


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
        if status == "running":
            P.append(
                Problem(
                    f["summary.json"],
                    "incomplete run: status is still 'running' (it never finished, or was killed)",
                )
            )
        elif status in REPORTED_STATUSES:
            why = summary.get("error") or summary.get("stop_reason") or ""
            why = " ".join(str(why).split())[:200]  # one line, whatever the file holds
            P.append(
                Problem(
                    run_dir,
                    f"run {status}" + (f" ({why})" if why else "") + ": recorded, not a result",
                    warning=True,
                )
            )
        elif not isinstance(status, str) or status not in STATUSES:
            P.append(
                Problem(f["summary.json"], f"unknown status {_dumps(status)} (one of {', '.join(STATUSES)})")
            )
        m = summary.get("metrics")
        if isinstance(m, dict) and rows is not None:
            P += [Problem(f["summary.json"], msg) for msg in check_metrics(m, rows, config)]
        elif m is None and status not in REPORTED_STATUSES:
            P.append(Problem(f["summary.json"], "no metrics block"))
        elif m is not None and not isinstance(m, dict):
            P.append(Problem(f["summary.json"], f"metrics is {_dumps(m)}, not an object"))
        if rows is not None:
            P += [Problem(f["summary.json"], msg) for msg in check_summary_numbers(summary, rows)]
        if config is not None:
            P += [Problem(f["summary.json"], msg) for msg in _summary_vs_config(summary, config)]
    if events is not None:
        if rows is not None:
            P += [Problem(f["mllog.txt"], msg) for msg in check_mllog_vs_curve(events, rows)]
        if summary is not None:
            P += [Problem(f["mllog.txt"], msg) for msg in check_mllog_vs_summary(events, summary)]
        if compliance:
            fails, warns = compliance_problems(f["mllog.txt"])
            # A run that diverged, failed or was interrupted may leave an incomplete log by
            # nature (no evaluation before a NaN at step 1): its findings are warnings.
            # A running run is already a failure above; its log simply has no end yet.
            strict = status in (None, "success")
            P += [Problem(f["mllog.txt"], "compliance: " + msg, warning=not strict) for msg in fails]
            P += [Problem(f["mllog.txt"], "compliance: " + msg, warning=True) for msg in warns]
    division = (summary or {}).get("division") or section(config, "config").get("division")
    if division == "closed" and config is not None:
        P += [Problem(f["config.json"], msg, warning=w) for msg, w in check_closed(config)]
    elif division == "open" and config is not None:
        P += [Problem(f["config.json"], msg) for msg in check_open(config)]
    elif division not in ("closed", "open") and (summary or config):
        P.append(Problem(run_dir, f"division {_dumps(division)} is neither closed nor open"))
    P += check_layout(run_dir, summary, config)
    return P, summary, config


def run_benchmark(config: dict) -> str | None:
    """The benchmark name a run is filed under: an open submission's own name, else --benchmark."""
    name = section(config, "submission").get("name") or section(config, "config").get("benchmark")
    return name if isinstance(name, str) else None


def check_open(config: dict) -> list[str]:
    """An open run must say where its code came from, so it can be traced."""
    sub = config.get("submission")
    if not isinstance(sub, dict):
        return ["open division: config.json has no 'submission' (the user's model/optimizer source)"]
    out = []
    sources = {k: sub.get(k) for k in ("model", "optimizer") if sub.get(k) is not None}
    if not sources:
        out.append("open division: submission names neither a model nor an optimizer")
    for key, src in sources.items():
        if not isinstance(src, dict) or not isinstance(src.get("ref"), str) or not src["ref"]:
            out.append(f"open division: submission.{key} has no 'ref'")
            continue
        digest = src.get("sha256")
        if not (isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest)):
            out.append(f"open division: submission.{key} ({_dumps(src['ref'])}) has no sha256 of its source")
    return out


def _summary_vs_config(summary: dict, config: dict) -> list[str]:
    cfg, res, data = section(config, "config"), section(config, "resolved"), section(config, "data")
    pairs = (
        ("benchmark", run_benchmark(config)),
        ("division", cfg.get("division")),
        ("seed", res.get("seed")),
        ("world_size", res.get("world_size")),
        ("global_batch", res.get("global_batch")),
        ("dataset", data.get("name")),
        ("synthetic", data.get("synthetic")),
    )
    return [
        f"{key} is {_dumps(summary[key])}, config.json says {_dumps(want)}"
        for key, want in pairs
        if key in summary and want is not None and not same(summary[key], want)
    ]


def check_layout(run_dir: str, summary: dict | None, config: dict | None) -> list[Problem]:
    """results/<system>/<benchmark>/<division>/<run-id>, names agreeing with the files."""
    out = []
    run = os.path.abspath(run_dir)
    division_dir = os.path.dirname(run)
    benchmark_dir = os.path.dirname(division_dir)
    system_dir = os.path.dirname(benchmark_dir)
    s, c = summary or {}, config or {}
    division = s.get("division") or section(c, "config").get("division")
    benchmark = s.get("benchmark") or run_benchmark(c)
    system = section(c, "resolved").get("system")
    division, benchmark, system = (v if isinstance(v, str) else None for v in (division, benchmark, system))
    if division and os.path.basename(division_dir) != division:
        out.append(
            Problem(
                run_dir,
                f"a {division}-division run must be in a folder named {division}, "
                f"not {os.path.basename(division_dir)!r} "
                "(results/<system>/<benchmark>/<division>/<run-id>)",
            )
        )
    if benchmark and os.path.basename(benchmark_dir) != safe_name(benchmark):
        out.append(
            Problem(
                run_dir,
                f"a {benchmark} run must be in a folder named {safe_name(benchmark)}, "
                f"not {os.path.basename(benchmark_dir)!r}",
            )
        )
    if system and os.path.basename(system_dir) != safe_name(system):
        out.append(
            Problem(
                run_dir,
                f"system {system!r} (config.json) but the system folder is {os.path.basename(system_dir)!r}",
            )
        )
    return out


def check_system_dir(system_dir: str) -> list[Problem]:
    path = os.path.join(system_dir, "system.json")
    if not os.path.isfile(path):
        return [Problem(path, "missing (every results/<system>/ folder has a system.json)")]
    problems: list[Problem] = []
    _read(path, read_json, problems)
    return problems


def validate(path: str, compliance: bool = True) -> Result:
    """Check every run folder at or below `path`."""
    if not os.path.exists(path):
        raise UserError(f"not found: {path}")
    result = Result(path)
    result.runs = find_run_dirs(path)
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
        # results/<system>/<benchmark>/<division>/<run-id>: the system folder is 3 levels up.
        system_dir = os.path.normpath(os.path.join(run_dir, os.pardir, os.pardir, os.pardir))
        if os.path.abspath(system_dir) not in system_dirs:
            system_dirs.append(os.path.abspath(system_dir))
            result.problems += check_system_dir(system_dir)
    for runs in seeds.values():
        result.problems += check_seeds(runs)
    return result
