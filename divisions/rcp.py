"""Reference convergence points (RCPs): MLPerf's check that a closed-division result
converged plausibly, in MLPerf's own file format and with MLPerf's own rule.

A result that needs implausibly few epochs for its global batch points at wrong
hyperparameters or a harness bug (workers that see more data than they should);
MLPerf rejects it. One that is a little faster than the reference is accepted and
its score normalised. The rule, as mlperf-logging's rcp_checker applies it
(``check`` agrees with that checker; tests/test_rcp.py runs it as the oracle):

- An RCP file is a JSON object of records ``{"Benchmark", "BS" (global batch),
  "Hyperparams", "Epochs to converge": [one number per reference run]}``.
- Per record: the reference mean is the olympic mean of its epochs (drop one min
  and one max); its standard deviation is the population std (n in the
  denominator) over ALL its points; the minimum acceptable mean is found by
  binary search on [0, mean] (to 1e-4) for the lowest submission mean that a
  one-sided, equal-variance two-sample t-test (alpha 0.05) does not call faster
  than the reference, with n_ref - 2 reference samples and SUBMISSION_RUNS - 2
  submission samples (both olympic).
- Pruning (MLPerf's default pass): records with a batch below that of the
  fastest-converging record are dropped; then, from small to large batch, a
  record slower than the interpolation of its two neighbours is dropped.
- A submission's global batch: an exact record is used; between two records,
  mean and std are interpolated linearly in the batch (with 2 x SUBMISSION_RUNS
  reference samples for the t-test); above the largest record the RCP is
  missing (fail); below the smallest, the smallest record is used, and the
  result passes only if it converges no faster than that record allows.
- Submission mean: olympic mean of the runs' epochs to converge. A run that
  never reached the target counts as infinitely slow, so one such run is
  dropped as the slowest; more than one fails the set.
- Pass when submission mean >= minimum acceptable mean. A passing result
  faster than the reference mean is normalised by reference mean / submission
  mean (the score, a time, is multiplied by it, as MLPerf's result summarizer
  does); otherwise the factor is 1.

What ttabench adds: a run's epochs to converge is the epoch of its first
evaluation at or above the target (from curve.csv, rounded to 3 decimals as the
checker rounds ``epoch_num``), so a run that went on past the target still
counts where it first reached it; the target and the data set are kept in each
record's Hyperparams, and checking runs on another data set is an error.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from ttabench import UserError
from ttabench.divisions import metrics, stats
from ttabench.divisions.results import number

SUBMISSION_RUNS = 5  # runs per closed submission, as MLPerf's image classification (resnet)
REFERENCE_RUNS = 2 * SUBMISSION_RUNS  # MLPerf: references need twice the submission's runs
ALPHA = 0.05
TOLERANCE = 1e-4  # of the binary search for the minimum acceptable mean, in epochs
EPOCH_DECIMALS = 3
FIELDS = ("Benchmark", "BS", "Hyperparams", "Epochs to converge")


@dataclass(frozen=True)
class Reference:
    """One RCP record with its statistics (an interpolated one has no epochs)."""

    name: str
    benchmark: str
    batch: int
    hyperparams: dict
    epochs: tuple
    mean: float
    std: float
    min_epochs: float

    @property
    def acceptable(self) -> float:
        # rcp_checker compares against mean / (mean / min_epochs), not min_epochs itself;
        # the same expression keeps the last bit of a borderline comparison identical.
        return self.mean / (self.mean / self.min_epochs) if self.min_epochs else 0.0


def population_std(xs) -> float:
    m = stats.mean(xs)
    return math.sqrt(math.fsum((x - m) ** 2 for x in xs) / len(xs))


def one_sided_p(subm_mean: float, subm_n: int, ref_mean: float, ref_n: int, std: float) -> float:
    """p of 'the submission converges faster' in an equal-variance t-test (both std the same)."""
    import scipy.stats  # heavy import, needed by `rcp` alone

    t, p = scipy.stats.ttest_ind_from_stats(subm_mean, std, subm_n, ref_mean, std, ref_n, equal_var=True)
    return p / 2 if t < 0 else 1 - p / 2


def min_acceptable_mean(mean: float, std: float, ref_samples: int) -> float:
    """The lowest submission mean not significantly faster than the reference (binary search)."""
    if std == 0:
        return mean
    lo, hi = 0.0, mean
    mid = (lo + hi) / 2
    while hi - lo > TOLERANCE:
        # argument order as rcp_checker's (the test is symmetric in the two sample counts)
        if one_sided_p(mid, ref_samples, mean, SUBMISSION_RUNS - 2, std) > ALPHA:
            hi = mid
        else:
            lo = mid
        mid = (lo + hi) / 2
    return mid


def reference(name: str, record: dict) -> Reference:
    epochs = sorted(record["Epochs to converge"])
    mean = stats.olympic_mean(epochs)
    std = population_std(epochs)
    return Reference(
        name,
        record["Benchmark"],
        record["BS"],
        record["Hyperparams"],
        tuple(epochs),
        mean,
        std,
        min_acceptable_mean(mean, std, len(epochs) - 2),
    )


def interpolate(batch: int, low: Reference, high: Reference) -> Reference:
    """The record for a batch between two records: mean and std linear in the batch."""

    def lin(a: float, b: float) -> float:  # numpy.interp's expression, for the same last bit
        return (b - a) / (high.batch - low.batch) * (batch - low.batch) + a

    mean, std = lin(low.mean, high.mean), lin(low.std, high.std)
    return Reference(
        f"{low.benchmark}_interp_{batch}",
        low.benchmark,
        batch,
        {},
        (),
        mean,
        std,
        min_acceptable_mean(mean, std, REFERENCE_RUNS),
    )


def prune(refs: list[Reference]) -> list[Reference]:
    """MLPerf's pruned reference set (see the module docstring)."""
    refs = sorted(refs, key=lambda r: r.batch)
    fastest = min(refs, key=lambda r: r.mean)
    kept = [r for r in refs if r.batch >= fastest.batch]
    i = 1
    while i < len(kept) - 1:
        low, high = kept[i - 1], kept[i + 1]
        lin = (high.mean - low.mean) / (high.batch - low.batch) * (kept[i].batch - low.batch) + low.mean
        if kept[i].mean > lin:
            del kept[i]
            i -= 1
        i += 1
    return kept


# --- the RCP file -----------------------------------------------------------------------


def _record_problem(rec) -> str | None:
    if not isinstance(rec, dict):
        return "is not an object"
    missing = [f for f in FIELDS if f not in rec]
    if missing:
        return "lacks " + ", ".join(f'"{f}"' for f in missing)
    if not isinstance(rec["Benchmark"], str) or not rec["Benchmark"]:
        return '"Benchmark" is not a name'
    if isinstance(rec["BS"], bool) or not isinstance(rec["BS"], int) or rec["BS"] < 1:
        return f'"BS" {json.dumps(rec["BS"])[:30]} is not a positive integer'
    if not isinstance(rec["Hyperparams"], dict):
        return '"Hyperparams" is not an object'
    epochs = rec["Epochs to converge"]
    if not isinstance(epochs, list) or any(number(e) is None or e <= 0 for e in epochs):
        return '"Epochs to converge" is not a list of positive numbers'
    if len(epochs) < 3:
        return f'"Epochs to converge" has {len(epochs)} values; the olympic mean needs at least 3'
    return None


def load(path: str) -> dict[str, dict]:
    """The records of an RCP file, checked; a malformed file is one UserError line."""
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except FileNotFoundError:
        raise UserError(f"RCP file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: not an RCP file (not readable JSON: {e})") from None
    if not isinstance(raw, dict) or not raw:
        raise UserError(f"{path}: not an RCP file (expected a JSON object of records)")
    seen: dict[tuple, str] = {}
    for name, rec in raw.items():
        problem = _record_problem(rec)
        if problem:
            raise UserError(f"{path}: RCP record {name!r} {problem}")
        key = (rec["Benchmark"], rec["BS"])
        if key in seen:
            raise UserError(f"{path}: records {seen[key]!r} and {name!r} are both {key[0]} at BS {key[1]}")
        seen[key] = name
    return raw


def references(path: str, records: dict[str, dict], benchmark: str) -> list[Reference]:
    """The benchmark's records with statistics; an RCP file for other benchmarks is an error."""
    mine = {n: r for n, r in records.items() if r["Benchmark"] == benchmark}
    if not mine:
        others = ", ".join(sorted({r["Benchmark"] for r in records.values()}))
        raise UserError(f"{path}: no RCP for benchmark {benchmark} (the file has RCPs for {others})")
    return [reference(n, r) for n, r in mine.items()]


def hyperparam(path: str, refs: list[Reference], key: str):
    """A Hyperparams entry all the benchmark's records agree on (None when none has it)."""
    values = {json.dumps(r.hyperparams.get(key)) for r in refs}
    if len(values) > 1:
        raise UserError(f"{path}: the records disagree on Hyperparams {key!r} ({', '.join(sorted(values))})")
    return refs[0].hyperparams.get(key)


# --- checking a submission --------------------------------------------------------------


def submission_mean(epochs: list[float | None]) -> float | None:
    """Olympic mean with a run that never converged counted as infinitely slow."""
    return stats.olympic_mean([math.inf if e is None else e for e in epochs])


def _verdict(ref: Reference, mean: float) -> tuple[bool, float | None]:
    ok = mean >= ref.acceptable
    return ok, (max(1.0, ref.mean / mean) if ok else None)


def check(refs: list[Reference], benchmark: str, batch: int, epochs: list[float | None]) -> dict:
    """MLPerf's verdict on one set of runs (epochs None: the run never reached the target)."""
    if len(epochs) < 3:
        raise UserError(
            f"{len(epochs)} runs: the olympic mean needs at least 3 (a closed submission has {SUBMISSION_RUNS})"
        )
    out = {
        "pass": False,
        "benchmark": benchmark,
        "global_batch": batch,
        "runs": len(epochs),
        "submission_mean_epochs": None,
        "rcp": None,
        "rcp_mean_epochs": None,
        "min_acceptable_epochs": None,
        "normalization": None,
        "reason": "",
        "warnings": [],  # what makes the comparison less than like for like (the caller adds them)
    }
    missed = sum(e is None for e in epochs)
    if missed > 1:
        out["reason"] = (
            f"insufficient convergence: {missed} of {len(epochs)} runs never reached the target "
            "(one may be dropped as the slowest)"
        )
        return out
    mean = submission_mean(epochs)
    out["submission_mean_epochs"] = mean
    pruned = prune(refs)
    exact = [r for r in pruned if r.batch == batch]
    below = [r for r in pruned if r.batch < batch]
    above = [r for r in pruned if r.batch > batch]
    if exact:
        ref, how = exact[0], "RCP found"
    elif below and above:
        ref, how = interpolate(batch, below[-1], above[0]), "RCP interpolated"
    elif below:
        out["reason"] = (
            f"missing RCP: global batch {batch} is above the largest reference ({below[-1].batch}); "
            f"an RCP with BS = {batch} is needed"
        )
        return out
    else:
        ref, how = above[0], f"below the smallest RCP (BS {above[0].batch})"
    ok, norm = _verdict(ref, mean)
    out.update(
        {
            "pass": ok,
            "rcp": ref.name,
            "rcp_mean_epochs": ref.mean,
            "min_acceptable_epochs": ref.acceptable,
            "normalization": norm,
        }
    )
    cmp = ">=" if ok else "<"
    text = f"{how}: submission mean {mean:.3f} epochs {cmp} minimum acceptable {ref.acceptable:.3f}"
    if not ok and not exact and not below:
        text = f"missing RCP: converges faster than the smallest reference allows ({text}); an RCP with BS = {batch} is needed"
    elif not ok:
        text += " (converges implausibly fast: check the hyperparameters and the data each worker sees)"
    elif norm > 1:
        text += f"; faster than the reference mean {ref.mean:.3f}: normalised by {norm:.4f}"
    out["reason"] = text
    return out


def epochs_at(refs: list[Reference], batch: int) -> tuple[float | None, str]:
    """Epochs to the RCPs' target at a global batch, chosen as ``check`` chooses the reference
    (MLPerf's rcp_checker: the pruned set; a record at that batch, else linear interpolation
    between the neighbouring records, else the smallest record below them all), and how it was
    found. None above the largest record: the RCPs say nothing there."""
    pruned = prune(refs)
    exact = [r for r in pruned if r.batch == batch]
    below = [r for r in pruned if r.batch < batch]
    above = [r for r in pruned if r.batch > batch]
    if exact:
        return exact[0].mean, f"RCP at global batch {batch}"
    if below and above:
        low, high = below[-1], above[0]
        return interpolate(
            batch, low, high
        ).mean, f"RCPs interpolated between global batch {low.batch} and {high.batch}"
    if above:
        return above[0].mean, f"the smallest RCP (global batch {above[0].batch})"
    return None, f"above the largest RCP (global batch {below[-1].batch})"


# --- building an RCP file ---------------------------------------------------------------


def epochs_to_target(rows: list[dict], target: float) -> float | None:
    """The epoch of the first evaluation at or above the target, rounded as rcp_checker rounds."""
    epochs = metrics.tta_epochs(rows, target)
    return None if epochs is None else round(epochs, EPOCH_DECIMALS)


def build(runs: list[dict]) -> dict[str, dict]:
    """RCP records from reference runs: dicts with benchmark, global_batch, hyperparams, epochs, name.

    One benchmark per file; per global batch at least REFERENCE_RUNS runs, all converged and
    with the same hyperparameters.
    """
    benches = sorted({r["benchmark"] for r in runs})
    if len(benches) != 1:
        raise UserError(f"runs of several benchmarks ({', '.join(benches)}): one benchmark per RCP file")
    by_batch: dict[int, list[dict]] = {}
    for r in runs:
        if r["epochs"] is None:
            raise UserError(f"{r['name']}: never reached the target; every reference run must converge")
        by_batch.setdefault(r["global_batch"], []).append(r)
    records = {}
    for batch in sorted(by_batch):
        group = by_batch[batch]
        if len(group) < REFERENCE_RUNS:
            raise UserError(
                f"global batch {batch}: {len(group)} runs; an RCP needs at least {REFERENCE_RUNS} "
                f"(twice the {SUBMISSION_RUNS} of a submission, as MLPerf)"
            )
        for r in group[1:]:
            if r["hyperparams"] != group[0]["hyperparams"]:
                diff = sorted(
                    k for k in r["hyperparams"] if r["hyperparams"][k] != group[0]["hyperparams"].get(k)
                )
                raise UserError(f"{r['name']}: differs from {group[0]['name']} in {', '.join(diff)}")
        records[f"{benches[0]}_ref_{batch}"] = {
            "Benchmark": benches[0],
            "BS": batch,
            "Hyperparams": group[0]["hyperparams"],
            "Epochs to converge": [r["epochs"] for r in group],
        }
    return records
