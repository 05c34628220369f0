"""What a prediction assumes about convergence: the epochs to accuracy at each global batch.

The epochs to accuracy change with the global batch. With RCPs (``--rcps
FILE``; by default the shipped file when it is for the run's benchmark and data
set), each row's epochs to the RCPs' target are the RCPs' at that global batch,
chosen and interpolated as MLPerf's rcp_checker does, and the TTA / ATTMT
stretch the measured curve's epochs by RCP(batch) / RCP(measured batch).
Without RCPs (or past the largest RCP) the epochs are assumed unchanged, and
every row says so. Used by `ttabench predict` (launch/commands/predict.py).
"""

from __future__ import annotations

import os

import ttabench
from ttabench import UserError
from ttabench.divisions import metrics, rcp

# The RCPs a repository checkout ships (results/ is not part of an installed wheel).
SHIPPED_RCPS = os.path.join(os.path.dirname(os.path.abspath(ttabench.__file__)), "results", "rcps")


def load_rcps(path: str | None, info: dict) -> dict | None:
    """The RCPs a prediction uses: FILE (an error when it has none for the run's benchmark or
    data set), else the shipped ones for the run's benchmark and data set, else None
    ('none': no RCPs, the epochs are assumed unchanged)."""
    if path == "none":
        return None
    if path is None:
        shipped = (
            sorted(os.path.join(SHIPPED_RCPS, f) for f in os.listdir(SHIPPED_RCPS) if f.endswith(".json"))
            if os.path.isdir(SHIPPED_RCPS)
            else []
        )
        for f in shipped:
            found = _rcps_for(f, info, strict=False)
            if found is not None:
                return found
        return None
    return _rcps_for(path, info, strict=True)


def _rcps_for(path: str, info: dict, strict: bool) -> dict | None:
    records = rcp.load(path)
    bench = str(info["benchmark"])
    if not strict and not any(r["Benchmark"] == bench for r in records.values()):
        return None
    refs = rcp.references(path, records, bench)
    data = rcp.hyperparam(path, refs, "dataset")
    if data is not None and data != info["dataset"]:
        if not strict:
            return None
        raise UserError(f"--rcps {path}: RCPs for data set {data}, the run trained on {info['dataset']}")
    target = rcp.hyperparam(path, refs, "target_accuracy")
    measured, how = rcp.epochs_at(refs, info["global_batch"])
    return {"path": path, "refs": refs, "target": target, "measured": measured, "measured_how": how}


def _epochs(info: dict, gb: int, rcps: dict | None) -> tuple[float, str, str]:
    """(scale of the measured curve's epochs, source, what it rests on) at global batch gb."""
    gb0 = info["global_batch"]
    if rcps is not None and rcps["measured"] is not None:
        e, how = rcp.epochs_at(rcps["refs"], gb)
        if e is not None:
            k = e / rcps["measured"]
            return (
                k,
                "rcp",
                (
                    f"epochs to {_pct(rcps['target'])} from the RCPs: {e:.2f} at global batch {gb} ({how}), "
                    f"{rcps['measured']:.2f} at the measured {gb0}; the measured curve's epochs x {k:.3f}"
                ),
            )
        return (
            1.0,
            "measured run",
            (
                f"epochs to accuracy assumed unchanged from the measured run at global batch {gb0} "
                f"(global batch {gb} is {how})"
            ),
        )
    if gb == gb0:
        return 1.0, "measured run", f"epochs to accuracy from the measured run (same global batch {gb})"
    why = "the RCPs do not cover the measured global batch" if rcps is not None else "no RCPs; --rcps FILE"
    return (
        1.0,
        "measured run",
        (
            f"epochs to accuracy from the measured run at global batch {gb0}, assumed unchanged at {gb} ({why})"
        ),
    )


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:g}%"


def epochs_target(info: dict, rcps: dict | None) -> float | None:
    """The accuracy that rows' epochs_to_target refer to: the RCPs', else the run's target,
    else its highest threshold."""
    if rcps is not None and rcps["measured"] is not None and rcps["target"] is not None:
        return rcps["target"]
    if info["target"] is not None:
        return info["target"]
    ts = metrics.thresholds(*metrics.parse_thresholds(info["thresholds"])) if info["thresholds"] else []
    return ts[-1] if ts else None


def convergence(info: dict, p: int, step_s: float, rcps: dict | None = None) -> dict:
    """TTA per threshold and ATTMT for p workers, epochs to target, and what they rest on."""
    b = info["global_batch"] // max(1, info["world"])
    gb = b * p
    spe = info["train_size"] // gb if info["train_size"] else 0
    if spe == 0:
        return {
            "tta_s": {},
            "attmt_s": None,
            "epochs_to_target": None,
            "epochs_source": None,
            "convergence": f"global batch {gb} exceeds the training set",
        }
    k, source, basis = _epochs(info, gb, rcps)
    curve = [(r["epoch"] * k, r["accuracy"]) for r in info["curve"]]
    ts = metrics.thresholds(*metrics.parse_thresholds(info["thresholds"])) if info["thresholds"] else []
    extra = [info["target"]] if info["target"] is not None and info["target"] not in ts else []
    tta = {}
    for t in ts + extra:
        epoch = metrics.tta(curve, t)  # the curve's time axis is epochs (scaled by k) here
        tta[f"{t:g}"] = None if epoch is None else epoch * spe * step_s
    in_range = [tta[f"{t:g}"] for t in ts]
    attmt = metrics.attmt_of(in_range)
    target = epochs_target(info, rcps)
    if source == "rcp":
        epochs = rcp.epochs_at(rcps["refs"], gb)[0]
    else:
        epochs = None if target is None else metrics.tta(curve, target)
    return {
        "tta_s": tta,
        "attmt_s": attmt,
        "epochs_to_target": epochs,
        "epochs_source": source,
        "convergence": basis,
    }


def convergence_note(info: dict, rcps: dict | None) -> str:
    target = epochs_target(info, rcps)
    if rcps is not None and rcps["measured"] is not None:
        return (
            f"epochs to {_pct(target)}: the RCPs of {rcps['path']} at each global batch (MLPerf's choice "
            "and interpolation); TTA and ATTMT: the measured curve with its epochs scaled by "
            "RCP(global batch) / RCP(measured global batch); past the largest RCP, assumed unchanged"
        )
    why = (
        f"the RCPs of {rcps['path']} do not cover the measured global batch ({rcps['measured_how']})"
        if rcps is not None
        else "no RCPs for this benchmark and data set (--rcps FILE)"
    )
    return (
        f"epochs to accuracy: the measured run's at every global batch, assumed unchanged with the "
        f"global batch in every row ({why}); they do change with it"
    )
