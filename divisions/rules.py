"""The division rules a run's config.json must satisfy: a closed-division run trains a
reference benchmark with the reference recipe number for number on real CIFAR-10; an
open-division run says where its code came from. Pure functions of config.json.
"""

from __future__ import annotations

import json
import re

from ttabench import UserError
from ttabench.divisions import algorithms
from ttabench.divisions.checks import same, short_json
from ttabench.divisions.results import number, section
from ttabench.reference_impls import recipe as ref

FULL_CIFAR10 = (50000, 10000)


def check_closed(config: dict) -> list[tuple[str, bool]]:
    """Broken closed-division rules as (message, is_warning), from config.json alone."""
    found = [
        *_closed_model(config),
        *_closed_recipe(config.get("recipe"), ref.CLOSED.to_dict()),
        *_closed_data(section(config, "data")),
        *_closed_batch(section(config, "config"), section(config, "resolved")),
        *_closed_algorithm(section(config, "config"), section(config, "resolved")),
    ]
    return [(f"closed division: {msg}", warning) for msg, warning in found]


def _closed_model(config: dict) -> list[tuple[str, bool]]:
    model, cfg = section(config, "model"), section(config, "config")
    name = model.get("name")
    if not isinstance(name, str) or name not in ref.BENCHMARKS:
        return [(f"model {name!r} is not a reference benchmark ({', '.join(ref.BENCHMARKS)})", False)]
    out = []
    depth, version = ref.BENCHMARKS[name]
    if (model.get("depth"), model.get("version")) != (depth, version):
        out.append(
            (
                f"model {name} must be depth {depth} v{version}, config.json "
                f"says depth {model.get('depth')} v{model.get('version')}",
                False,
            )
        )
    if cfg.get("benchmark") not in (None, name):
        out.append((f"model {name} but benchmark {cfg.get('benchmark')}", False))
    return out


def _closed_recipe(recipe, reference: dict) -> list[tuple[str, bool]]:
    """The recipe number for number, augmentation included."""
    if not isinstance(recipe, dict):
        return [("config.json has no recipe", False)]
    out = []
    for key, want in reference.items():
        if key not in recipe:
            out.append((f"recipe {key} missing (the reference recipe says {json.dumps(want)})", False))
        elif not _exactly(recipe[key], want):
            what = "augmentation" if key == "augmentation" else f"recipe {key}"
            out.append(
                (f"{what} is {json.dumps(recipe[key])}, the reference recipe says {json.dumps(want)}", False)
            )
    out += [
        (f"recipe has {key!r}, which the reference recipe does not have", False)
        for key in recipe
        if key not in reference
    ]
    return out


def _closed_data(data: dict) -> list[tuple[str, bool]]:
    """Real CIFAR-10; the subset is a warning (real images, not the full benchmark)."""
    sizes = f"{data.get('train_size')} train / {data.get('test_size')} test images"
    full = f"{FULL_CIFAR10[0]} / {FULL_CIFAR10[1]}"
    if data.get("synthetic") is not False:
        if data.get("synthetic"):
            return [("trained on synthetic data (never a closed-division result; use real CIFAR-10)", False)]
        return [("config.json does not say the data was real (data.synthetic)", False)]
    if data.get("name") == "cifar10-subset":
        return [
            (
                f"trained on the CIFAR-10 subset ({sizes}), not the full benchmark ({full}): "
                "not comparable with full runs",
                True,
            )
        ]
    if data.get("name") != "cifar10":
        return [(f"data set {data.get('name')!r} is not CIFAR-10", False)]
    if (data.get("train_size"), data.get("test_size")) != FULL_CIFAR10:
        return [(f"CIFAR-10 with {sizes}, the full set has {full}", False)]
    return []


def _closed_batch(cfg: dict, resolved: dict) -> list[tuple[str, bool]]:
    """The batch within the recipe's bounds, its global batch and peak lr, the precision."""
    out = []
    batch, world = cfg.get("batch_size"), resolved.get("world_size")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (batch, world)):
        out.append(("config.json lacks config.batch_size or resolved.world_size", False))
    else:
        broken = ref.CLOSED.check_batch(batch, world)
        if broken:
            out.append((broken, False))
        peak = ref.CLOSED.peak_lr(batch * world)
        if resolved.get("global_batch") not in (None, batch * world):
            out.append(
                (f"global batch {resolved.get('global_batch')} is not {batch} x {world} workers", False)
            )
        elif number(resolved.get("peak_lr")) is not None and not same(resolved["peak_lr"], peak):
            out.append(
                (
                    f"peak learning rate {resolved['peak_lr']}, the recipe gives {peak} "
                    f"for global batch {batch * world}",
                    False,
                )
            )
    broken = ref.precision_rule(
        resolved.get("precision", cfg.get("precision")), resolved.get("device"), resolved.get("gpu_math")
    )
    if broken:
        out.append((broken, False))
    return out


def _closed_algorithm(cfg: dict, resolved: dict) -> list[tuple[str, bool]]:
    """One of the reference algorithms, its parameters within their documented ranges
    (divisions/algorithms.py); a run from before --algorithm trained with allreduce."""
    name = cfg.get("algorithm", algorithms.DEFAULT)
    given = {p.name: cfg.get(p.name) for p in algorithms.PARAMS}
    world = resolved.get("world_size")
    world = world if isinstance(world, int) and not isinstance(world, bool) else 1
    try:
        algorithms.check(name, given, world, str(resolved.get("backend") or "torchrun"))
    except UserError as e:
        return [(f"algorithm: {e}", False)]
    recorded = resolved.get("algorithm_params")
    if recorded is not None and recorded != algorithms.resolved_params(name, given):
        return [
            (
                f"algorithm {name}: resolved.algorithm_params {short_json(recorded)} are not the "
                f"parameters given with their defaults",
                False,
            )
        ]
    return []


def _exactly(a, b) -> bool:
    """Recipe numbers must be equal, not close (JSON turns the tuple of decay epochs into a list)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_exactly(x, y) for x, y in zip(a, b))
    return a == b


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
            out.append(
                f"open division: submission.{key} ({short_json(src['ref'])}) has no sha256 of its source"
            )
    return out
