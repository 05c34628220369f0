"""The seed study: how seed-sensitive are TTA at one threshold and ATTMT over a range?

    python -m benchmarks.seed_study results/rcp-runs/bs128 --thresholds 0.30:0.45:0.01 [--json OUT]

For every threshold T of the range: TTA(T) of every run, and ATTMT(LOW..HIGH), each in
training seconds (load-dependent on a shared machine) and in epochs (load-independent:
the same run on an idle machine reaches T at the same epoch). Per metric: n, mean, sample
variance, std, CV, and 95 % percentile-bootstrap intervals of the mean and of the CV
(divisions/stats.py's resampling: 10,000 resamples, seed 0). Per threshold, the variance
of TTA(T) against that of ATTMT on the same seeds:

- ratio var(TTA(T)) / var(ATTMT), with a paired percentile-bootstrap 95 % interval
  (the seeds are resampled, both metrics of a seed together);
- the Pitman-Morgan test of equal variances for paired samples (the correlation of
  X + Y with X - Y is zero exactly when var X = var Y; t with n - 2 degrees of freedom),
  two-sided p. A plain F-test would assume independent samples, which these are not.

Only runs that reached every threshold of the range enter (ATTMT is undefined otherwise);
the others are listed. Pure Python plus scipy for the t distribution; no torch.
"""

from __future__ import annotations

import argparse
import math
import random
import sys

from benchmarks import output
from ttabench.divisions import metrics, scoring, stats

RESAMPLES = stats.BOOTSTRAP_RESAMPLES


def _boot_indices(n: int):
    rng = random.Random(stats.BOOTSTRAP_SEED)
    for _ in range(RESAMPLES):
        yield [int(rng.random() * n) for _ in range(n)]


def cv_ci(xs: list[float]) -> list[float] | None:
    if len(xs) < 2:
        return None
    cvs = []
    for idx in _boot_indices(len(xs)):
        c = stats.cv([xs[i] for i in idx])
        if c is not None:
            cvs.append(c)
    cvs.sort()
    return [stats.percentile(cvs, 0.025), stats.percentile(cvs, 0.975)]


def describe(xs: list[float]) -> dict:
    d = stats.describe(xs)
    return {k: d[k] for k in ("n", "mean", "variance", "std", "cv", "ci95")} | {"cv_ci95": cv_ci(xs)}


def variance_ratio(x: list[float], y: list[float]) -> dict:
    """var(x) / var(y) on paired samples: bootstrap interval and Pitman-Morgan p."""
    n = len(x)
    vx, vy = stats.variance(x), stats.variance(y)
    if n < 3 or not vy:
        return {"ratio": None, "ci95": None, "pitman_morgan_p": None}
    ratios = []
    for idx in _boot_indices(n):
        a, b = stats.variance([x[i] for i in idx]), stats.variance([y[i] for i in idx])
        if b:
            ratios.append(a / b)
    ratios.sort()
    s = [a + b for a, b in zip(x, y)]
    d = [a - b for a, b in zip(x, y)]
    ms, md = stats.mean(s), stats.mean(d)
    cov = math.fsum((a - ms) * (b - md) for a, b in zip(s, d))
    den = math.sqrt(math.fsum((a - ms) ** 2 for a in s) * math.fsum((b - md) ** 2 for b in d))
    r = cov / den if den else 0.0
    import scipy.stats  # heavy import, only for the t distribution

    t = r * math.sqrt((n - 2) / max(1e-300, 1 - r * r))
    p = 2 * scipy.stats.t.sf(abs(t), n - 2)
    return {
        "ratio": vx / vy,
        "ci95": [stats.percentile(ratios, 0.025), stats.percentile(ratios, 0.975)],
        "pitman_morgan_p": float(p),
    }


def study(runs, spec) -> dict:
    ts = metrics.thresholds(*spec)
    used, left_out = [], []
    for run in runs:
        secs = [metrics.tta(run.points, t) for t in ts]
        eps = [metrics.tta_epochs(run.rows, t) for t in ts]
        if any(v is None for v in secs):
            left_out.append(run.name)
        else:
            used.append((run, secs, eps))
    out = {"thresholds": ts, "runs": [r.name for r, _, _ in used], "left_out": left_out, "units": {}}
    for unit, pos in (("seconds", 1), ("epochs", 2)):
        per_t = [[u[pos][i] for u in used] for i in range(len(ts))]
        attmt = [metrics.attmt_of(u[pos]) for u in used]
        out["units"][unit] = {
            "attmt": describe(attmt),
            "tta": [
                {"threshold": t, **describe(v), "var_ratio_vs_attmt": variance_ratio(v, attmt)}
                for t, v in zip(ts, per_t)
            ],
        }
    return out


def _fmt(v, f="{:.3g}") -> str:
    return "-" if v is None else f.format(v)


def markdown(out: dict, unit: str) -> str:
    u = out["units"][unit]
    lines = [
        f"| metric ({unit}) | mean | sample var | std | CV | CV 95% CI | var / var(ATTMT) | ratio 95% CI | Pitman-Morgan p |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def row(name, d, vr):
        ci = d["cv_ci95"]
        rci = vr["ci95"] if vr else None
        lines.append(
            f"| {name} | {_fmt(d['mean'], '{:.3f}')} | {_fmt(d['variance'])} | {_fmt(d['std'])} | "
            f"{_fmt(d['cv'], '{:.1%}')} | {'-' if ci is None else f'{ci[0]:.1%}..{ci[1]:.1%}'} | "
            f"{_fmt(vr and vr['ratio'])} | {'-' if rci is None else f'{rci[0]:.3g}..{rci[1]:.3g}'} | "
            f"{_fmt(vr and vr['pitman_morgan_p'])} |"
        )

    for d in u["tta"]:
        row(f"TTA@{100 * d['threshold']:g}%", d, d["var_ratio_vs_attmt"])
    ts = out["thresholds"]
    row(f"ATTMT {100 * ts[0]:g}..{100 * ts[-1]:g}%", u["attmt"], None)
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.seed_study", description=__doc__.split("\n\n")[0])
    p.add_argument("inputs", nargs="+", help="run folders or folders of runs (one configuration)")
    p.add_argument("--thresholds", required=True, metavar="LOW:HIGH:STEP")
    p.add_argument("--json", metavar="OUT", help="also write every number as JSON")
    args = p.parse_args(argv)
    out = study(scoring.load_inputs(args.inputs), metrics.parse_thresholds(args.thresholds))
    print(f"{len(out['runs'])} runs reached every threshold; left out: {out['left_out'] or 'none'}\n")
    for unit in ("epochs", "seconds"):
        sys.stdout.write(markdown(out, unit) + "\n")
    output.write_json(args.json, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
