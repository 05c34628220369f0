"""The report's comparisons: what can be set beside what, and the numbers of each comparison.

- Sections: within a study, the configurations of one benchmark, data set and threshold spec
  (one figure each on the report page), each compared with the section's first.
- Pairs (the comparison page): two configurations that are the same run setting on two systems,
  or with two distributed algorithms, anywhere in the trees reported: their TTMT curves side by
  side, their ATTMT and the ratio B/A at every threshold (as `ttabench compare`).
"""

from __future__ import annotations

import json

from ttabench.divisions import algorithms, experiments, metrics, scoring
from ttabench.divisions.results import safe_name

DESCRIBE_KEYS = ("system", "benchmark", "division", "dataset", "workers", "network", "algorithm", "setting")
ALGORITHM_SETTINGS = {"algorithm", *algorithms.PARAM_BY_NAME}


def row_key(d: dict) -> tuple:
    return tuple(d[k] for k in DESCRIBE_KEYS)


def compare(a_row: dict, b_row: dict, scored: dict, spec: str, a: str, b: str) -> dict | None:
    """A against B threshold by threshold, with the headline: the highest threshold both reached
    (a threshold neither or only one reached gives no ratio; the spec's highest when none was)."""
    runs_a, runs_b = scored[row_key(a_row)], scored[row_key(b_row)]
    if not runs_a or not runs_b:
        return None
    table = scoring.compare_rows(
        [r.points for r in runs_a], [r.points for r in runs_b], metrics.parse_thresholds(spec)
    )
    both = [t for t in table if t["tta_ratio"] is not None]
    return {
        "a": a,
        "b": b,
        "rows": table,
        "last": both[-1] if both else table[-1],
        "both_reached": bool(both),
    }


def sections(study: dict, scored: dict, thresholds: str | None, notes: dict) -> list[dict]:
    """One section per benchmark, data set and threshold spec of a study: the rows that can be
    compared, each against the first."""
    found: dict[tuple, list[dict]] = {}
    for row in study["rows"]:
        found.setdefault((row["benchmark"], row["dataset"], thresholds or row["threshold_spec"]), []).append(
            row
        )
    out = []
    for i, ((bench, dataset, spec), members) in enumerate(found.items()):
        base = members[0]
        comparisons = [
            compare(base, other, scored, spec, base["label"], other["label"]) for other in members[1:]
        ]
        name = f"{study['id']}-{i}"
        out.append(
            {
                "id": name,
                "study": study,
                "benchmark": bench,
                "dataset": dataset,
                "spec": spec,
                "rows": members,
                "comparisons": [c for c in comparisons if c] if spec else [],
                "plot": f"plots/{name}-{safe_name(bench)}-{safe_name(dataset)}.svg",
                "note": notes.get(dataset),
            }
        )
    return out


def _same_setting(row: dict, leave_out: set[str]) -> str:
    what = {k: v for k, v in row["what"].items() if k not in leave_out}
    fixed = {k: row[k] for k in ("benchmark", "division", "dataset", "workers", "network", "threshold_spec")}
    return json.dumps([fixed, what], sort_keys=True, default=str)


def pairs(rows: list[dict], scored: dict, thresholds: str | None) -> list[dict]:
    """Every pair of configurations that differ only in the system, or only in the algorithm:
    the first of each such set against each of the others."""
    out = []
    for dim, leave_out in (("system", set()), ("algorithm", ALGORITHM_SETTINGS)):
        others = {"system": "algorithm", "algorithm": "system"}[dim]
        buckets: dict[tuple, list[dict]] = {}
        for row in rows:
            spec = thresholds or row["threshold_spec"]
            if spec:
                buckets.setdefault((_same_setting(row, leave_out), row[others], spec), []).append(row)
        for (_, _, spec), members in buckets.items():
            firsts: dict[str, dict] = {}
            for row in members:
                firsts.setdefault(row[dim], row)
            if len(firsts) < 2:
                continue
            base, *rest = firsts.values()
            for other in rest:
                a, b = _pair_label(base, dim), _pair_label(other, dim)
                c = compare(base, other, scored, spec, a, b)
                if c:
                    c.update(dim=dim, spec=spec, row_a=base, row_b=other, id=f"pair-{len(out)}")
                    out.append(c)
    return out


def _pair_label(row: dict, dim: str) -> str:
    workers = f"{row['workers']} worker{'s' if row['workers'] != 1 else ''}"
    network = "" if row["network"] == experiments.NOT_APPLIED else f", {row['network']}"
    return f"{row[dim]} ({workers}{network})"
