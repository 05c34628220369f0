"""`ttabench rcp`: build and apply MLPerf reference convergence points (divisions/rcp.py).

    ttabench rcp build RUN_DIRS... --target ACC -o FILE
    ttabench rcp check RUN_DIRS... --rcps FILE [--target ACC] [--json]
    ttabench rcp check --rcps FILE --benchmark B --global-batch N --epochs E1,E2,... [--json]

`check` exits 0 when the set passes, 1 when it fails, 2 on bad input. The file that
`build` writes is read by mlperf-logging's own checker as well
(``python -m mlperf_logging.rcp_checker --custom_rcps FILE``).
"""

from __future__ import annotations

import json
import os

from ttabench import UserError
from ttabench.divisions import algorithms, experiments, metrics, rcp, scoring
from ttabench.divisions.results import atomic_write_text, experiment_key, number, section
from ttabench.launch.usage import add_command, json_flag


def _target(value: float | None) -> float | None:
    return metrics.check_target(value)


def run_facts(run: scoring.Run, target: float) -> dict:
    """What an RCP needs from one run folder: benchmark, global batch, hyperparameters, epochs."""
    summary, config = run.summary or {}, run.config or {}
    if not summary or not config:
        raise UserError(f"{run.name}: not a run folder with summary.json and config.json")
    if summary.get("division") != "closed":
        raise UserError(
            f"{run.name}: a {summary.get('division')}-division run; RCPs are for closed-division runs"
        )
    if summary.get("synthetic"):
        raise UserError(f"{run.name}: trained on synthetic data, never a reference")
    resolved = section(config, "resolved")
    return {
        "name": run.name,
        "benchmark": summary.get("benchmark"),
        "global_batch": summary.get("global_batch"),
        "dataset": summary.get("dataset"),
        "algorithm": algorithms.run_label(summary, config),
        "epochs": rcp.epochs_to_target(run.rows, target),
        "hyperparams": {
            "global_batch_size": summary.get("global_batch"),
            "opt_base_learning_rate": resolved.get("peak_lr"),
            "opt_learning_rate_warmup_epochs": section(config, "recipe").get("warmup_epochs"),
            "eval_every_samples": resolved.get("eval_every_samples"),
            "target_accuracy": target,
            "dataset": summary.get("dataset"),
            # RCPs are per algorithm (with its parameters); records without it are allreduce's
            "algorithm": algorithms.run_label(summary, config),
        },
    }


def _cmd_build(args) -> int:
    target = _target(args.target)
    if os.path.isdir(args.output):
        raise UserError(f"-o names a folder: {args.output}")
    out_dir = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(out_dir):
        raise UserError(f"output folder does not exist: {out_dir}")
    runs = [run_facts(r, target) for r in scoring.load_inputs(args.runs)]
    found = sorted({r["algorithm"] for r in runs})
    if len(found) > 1:
        raise UserError(f"runs of several algorithms ({'; '.join(found)}): RCPs are per algorithm")
    records = rcp.build(runs)
    atomic_write_text(args.output, json.dumps(records, indent=2) + "\n")
    for name, rec in records.items():
        ref = rcp.reference(name, rec)
        print(
            f"{name}: {len(ref.epochs)} runs, mean {ref.mean:.3f} epochs (olympic), std {ref.std:.3f}, "
            f"minimum acceptable {ref.min_epochs:.3f}"
        )
    print(f"wrote {args.output}")
    return 0


def _parse_epochs(text: str) -> list[float | None]:
    """E1,E2,...; 'inf' or 'none' is a run that never reached the target."""
    out: list[float | None] = []
    for part in text.split(","):
        p = part.strip().lower()
        if p in ("inf", "none"):
            out.append(None)
            continue
        try:
            v = float(p)
        except ValueError:
            raise UserError(
                f"--epochs takes numbers E1,E2,... ('inf' for a run that did not converge), got {part!r}"
            ) from None
        if not v > 0 or v == float("inf"):
            raise UserError(f"--epochs: {part!r} is not a positive number of epochs")
        out.append(v)
    return out


def set_from_runs(runs: list[scoring.Run], path: str, refs_all: dict, target: float | None) -> dict:
    """rcp.check on one set of run folders, after checking that they form one set."""
    facts = [run_facts(r, target if target is not None else 0.0) for r in runs]
    benches = sorted({str(f["benchmark"]) for f in facts})
    if len(benches) != 1:
        raise UserError(f"runs of several benchmarks ({', '.join(benches)}): check one set at a time")
    refs = rcp.references(path, refs_all, benches[0])
    recorded = rcp.hyperparam(path, refs, "target_accuracy")
    if target is None:
        if recorded is None:
            raise UserError(f"{path} records no target_accuracy: give --target")
        target = recorded
    elif recorded is not None and recorded != target:
        raise UserError(f"--target {target:g} differs from the RCP's target_accuracy {recorded:g}")
    batches = sorted({f["global_batch"] for f in facts}, key=str)
    if len(batches) != 1:
        raise UserError(
            f"runs of mixed global batch ({', '.join(map(str, batches))}): one set has one global batch"
        )
    data = rcp.hyperparam(path, refs, "dataset")
    for f in facts:
        if data is not None and f["dataset"] != data:
            raise UserError(f"{f['name']}: data set {f['dataset']}, but the RCPs are for {data}")
    algorithm = rcp.hyperparam(path, refs, "algorithm") or algorithms.DEFAULT
    for f in facts:
        if f["algorithm"] != algorithm:
            raise UserError(
                f"{f['name']}: algorithm {f['algorithm']}, but the RCPs are for {algorithm} "
                "(RCPs are per algorithm)"
            )
    epochs = [rcp.epochs_to_target(r.rows, target) for r in runs]
    out = rcp.check(refs, benches[0], batches[0], epochs)
    out["warnings"] += [w for w in [cadence_warning(runs, refs)] if w]
    return out


CADENCE_RATIO = 1.5  # cadences within this factor of the references' count as the same


def cadence_warning(runs: list[scoring.Run], refs: list[rcp.Reference]) -> str | None:
    """A warning when the runs evaluated at another cadence than the RCPs' reference runs:
    epochs to the target are read at evaluations, so a run evaluated every epoch reads up to
    an epoch later than one evaluated every quarter epoch, and the two are not comparable."""
    mine = sorted({v for r in runs if (v := number(section(r.config, "resolved").get("eval_every_samples")))})
    theirs = sorted({v for ref in refs if (v := number(ref.hyperparams.get("eval_every_samples")))})
    if not mine or not theirs:
        return None
    lo, hi = theirs[0], theirs[-1]
    if all(lo / CADENCE_RATIO <= v <= hi * CADENCE_RATIO for v in mine):
        return None
    ref_text = f"{lo:g}" if lo == hi else f"{lo:g}-{hi:g}"
    return (
        f"evaluation cadence differs: the runs evaluated every {', '.join(f'{v:g}' for v in mine)} samples, "
        f"the RCPs' reference runs every {ref_text}; epochs to the target are read at evaluations, "
        "so the comparison is not like for like (use the RCPs' --eval-every)"
    )


def _closed_sets(runs: list[scoring.Run]) -> dict[str, list[scoring.Run]]:
    """Finished closed-division runs on real data, grouped as seeds of one experiment."""
    sets: dict[str, list[scoring.Run]] = {}
    for r in runs:
        s = r.summary or {}
        if s.get("division") == "closed" and not s.get("synthetic") and r.status in scoring.SCORED_STATUSES:
            sets.setdefault(experiment_key(r.name, r.summary, r.config), []).append(r)
    return sets


def set_label(runs: list[scoring.Run]) -> str:
    return runs[0].name if len(runs) == 1 else os.path.commonpath([r.name for r in runs])


def check_results(path: str, rcps: str) -> list[dict]:
    """rcp.check on every closed-division set of runs below `path` (for validate):
    each result gets "path"; a set that cannot be checked gets pass False and the reason."""
    records = rcp.load(rcps)
    out = []
    for runs in _closed_sets(scoring.load_inputs([path], every_run=True)).values():
        try:
            res = set_from_runs(runs, rcps, records, None)
        except UserError as e:  # e.g. fewer than 3 runs: a warning, not a failed check
            res = {"pass": False, "checkable": False, "reason": f"not checkable against {rcps}: {e}"}
            try:
                refs = rcp.references(rcps, records, str((runs[0].summary or {}).get("benchmark")))
                res["warnings"] = [w for w in [cadence_warning(runs, refs)] if w]
            except UserError:
                pass
        if res.get("runs", rcp.SUBMISSION_RUNS) != rcp.SUBMISSION_RUNS:
            res["note"] = f"{res['runs']} runs; a closed submission has {rcp.SUBMISSION_RUNS}"
        out.append({"path": set_label(runs), **res})
    return out


def annotate_report(rows: list[dict], runs: list[scoring.Run], rcps: str) -> None:
    """Adds rcp, rcp_normalization and tta_normalized_s (TTA x factor, as MLPerf scales a score)
    to every report row of closed-division runs, and a note saying what was found."""
    records = rcp.load(rcps)
    for row in rows:
        row.update({"rcp": None, "rcp_normalization": None, "tta_normalized_s": None})
    for runs_of_set in _closed_sets(runs).values():
        key = experiments.describe_run(runs_of_set[0])
        row = next((r for r in rows if all(r[k] == v for k, v in key.items())), None)
        if row is None:
            continue
        label = f"{row['system']}/{row['benchmark']}/{row['division']}"
        if row["rcp"] is not None:
            row["notes"].append(f"{label}: RCP not applied: several configurations in one row")
            row["rcp"] = row["rcp_normalization"] = row["tta_normalized_s"] = None
            continue
        try:
            res = set_from_runs(runs_of_set, rcps, records, None)
        except UserError as e:
            row["rcp"] = "not checkable"
            row["notes"].append(f"{label}: RCP not checkable: {e}")
            continue
        row["rcp"] = "pass" if res["pass"] else "fail"
        row["rcp_normalization"] = res["normalization"]
        target = rcp.hyperparam(rcps, rcp.references(rcps, records, res["benchmark"]), "target_accuracy")
        if res["pass"] and row["tta_s"] is not None and row["target"] == target:
            row["tta_normalized_s"] = row["tta_s"] * res["normalization"]
        note = f"{label}: RCP {row['rcp']} ({res['reason']})"
        if row["tta_normalized_s"] is not None:
            note += f"; TTA x {res['normalization']:.4f} = {row['tta_normalized_s']:.2f} s"
        row["notes"].append(note)


def _cmd_check(args) -> int:
    target = _target(args.target)
    refs_all = rcp.load(args.rcps)
    numbers = (args.benchmark, args.global_batch, args.epochs)
    if args.runs and any(v is not None for v in numbers):
        raise UserError("give RUN_DIRS or --benchmark/--global-batch/--epochs, not both")
    if args.runs:
        out = set_from_runs(scoring.load_inputs(args.runs), args.rcps, refs_all, target)
    else:
        if any(v is None for v in numbers):
            raise UserError("without RUN_DIRS, --benchmark, --global-batch and --epochs are all needed")
        if args.global_batch < 1:
            raise UserError(f"--global-batch must be a positive integer, got {args.global_batch}")
        refs = rcp.references(args.rcps, refs_all, args.benchmark)
        out = rcp.check(refs, args.benchmark, args.global_batch, _parse_epochs(args.epochs))
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(
            f"{'PASS' if out['pass'] else 'FAIL'}: {out['benchmark']} at global batch {out['global_batch']}: {out['reason']}"
        )
        for w in out.get("warnings", []):
            print(f"warning: {w}")
    return 0 if out["pass"] else 1


def add_commands(sub) -> None:
    p = sub.add_parser(
        "rcp",
        help="MLPerf reference convergence points: build them from runs, check runs against them",
        description="Reference convergence points (RCPs) in MLPerf's file format, applied with "
        "MLPerf's rule (olympic mean, t-test at alpha 0.05, pruning, interpolation; "
        f"{rcp.SUBMISSION_RUNS} runs per closed submission).",
    )
    rsub = p.add_subparsers(dest="rcp_command", required=True, metavar="ACTION")
    b = add_command(
        rsub,
        "build",
        _cmd_build,
        help="write an RCP file from reference runs",
        description="One record per global batch: the epoch of each run's first evaluation at or above "
        f"--target. At least {rcp.REFERENCE_RUNS} converged closed-division runs per global batch.",
    )
    b.add_argument("runs", nargs="+", metavar="RUN_DIRS", help="run folders or folders of run folders")
    b.add_argument("--target", type=float, required=True, help="accuracy that counts as converged (fraction)")
    b.add_argument("-o", "--output", required=True, metavar="FILE", help="the RCP file (JSON) to write")
    c = add_command(
        rsub,
        "check",
        _cmd_check,
        help="check a set of runs (or their epochs) against an RCP file",
        description="Exit 0 when the set passes, 1 when it fails. JSON keys: pass, benchmark, "
        "global_batch, submission_mean_epochs, rcp_mean_epochs, min_acceptable_epochs, "
        "normalization, reason (and runs, rcp).",
    )
    c.add_argument("runs", nargs="*", metavar="RUN_DIRS", help="the runs of one submission")
    c.add_argument("--rcps", required=True, metavar="FILE", help="an RCP file (MLPerf's format)")
    c.add_argument("--target", type=float, help="convergence target (default: the RCP's target_accuracy)")
    c.add_argument("--benchmark", help="without RUN_DIRS: the benchmark")
    c.add_argument("--global-batch", type=int, metavar="N", help="without RUN_DIRS: the global batch")
    c.add_argument("--epochs", metavar="E1,E2,...", help="without RUN_DIRS: epochs to converge of each run")
    json_flag(c)
