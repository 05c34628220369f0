"""A RunConfig from outside: `ttabench run`'s flags, generated from RunConfig's fields
(their help text, type, group), and a run folder's config.json (``--resume``).

``ttabench run --help``, the worker module, ``ttabench submit`` and the flags an
orchestrator (sweep, netlab run) passes on after ``--`` are all made here, so they
agree; the configuration itself, its checks and its parsed values are in config.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import typing
from collections.abc import Iterable
from dataclasses import dataclass

from ttabench import UserError
from ttabench.divisions.results import CHECKPOINT_FILE, read_json
from ttabench.launch import usage
from ttabench.launch.config import RunConfig


def _parser_type(hint) -> type:
    """A field's type for argparse: Optional[X] -> X."""
    if typing.get_origin(hint) is typing.Union:
        (hint,) = [t for t in typing.get_args(hint) if t is not type(None)]
    return hint


def add_arguments(parser: argparse.ArgumentParser, skip: tuple[str, ...] = (), defaults: bool = True) -> None:
    """Add one option per RunConfig field, in named groups, typed by the field's type.
    With defaults=False an option left out is absent from the parsed namespace."""
    hints = typing.get_type_hints(RunConfig)
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in dataclasses.fields(RunConfig):
        if f.name not in skip:
            group = groups.setdefault(f.metadata["group"], parser.add_argument_group(f.metadata["group"]))
            _add_field(group, f, hints[f.name], defaults)


def add_fields(parser: argparse.ArgumentParser, names: tuple[str, ...]) -> None:
    """The options of the named RunConfig fields, as `ttabench run` has them, for another command
    that takes the same settings (its own defaults equal to RunConfig's)."""
    hints = typing.get_type_hints(RunConfig)
    fields = {f.name: f for f in dataclasses.fields(RunConfig)}
    for name in names:
        _add_field(parser, fields[name], hints[name], defaults=True)


def _add_field(container, f: dataclasses.Field, hint, defaults: bool) -> None:
    flag = "--" + f.name.replace("_", "-")
    md = f.metadata
    kw = {"dest": f.name, "default": f.default if defaults else argparse.SUPPRESS, "help": md["help"]}
    kind = _parser_type(hint)
    if kind is bool:
        kw["action"] = argparse.BooleanOptionalAction
    else:
        kw["type"] = kind
        kw["metavar"] = f.name.upper()
        if "choices" in md:
            kw["choices"] = md["choices"]
    container.add_argument(flag, **kw)


def add_resume_argument(parser: argparse.ArgumentParser, defaults: bool = True) -> None:
    """`--resume RUN_DIR`: the same for `ttabench run` and the worker module (RunConfig.resume
    is the launcher's flag for it, never typed)."""
    parser.add_argument(
        "--resume",
        dest="resume_dir",
        metavar="RUN_DIR",
        default=None if defaults else argparse.SUPPRESS,
        help="continue a run from its checkpoint.pt (every other setting comes from the run's config.json)",
    )


def from_args(ns: argparse.Namespace) -> RunConfig:
    names = {f.name for f in dataclasses.fields(RunConfig)}
    return RunConfig(**{k: v for k, v in vars(ns).items() if k in names})


def add_run_flags(parser: argparse.ArgumentParser, defaults: bool = True) -> None:
    """The flags of `ttabench run`: every RunConfig field, --resume RUN_DIR and the seed options."""
    add_arguments(parser, skip=("resume",), defaults=defaults)
    add_resume_argument(parser, defaults)
    seeds = parser.add_argument_group("several runs").add_mutually_exclusive_group()
    seeds.add_argument(
        "--seeds",
        type=int,
        metavar="N",
        default=None if defaults else argparse.SUPPRESS,
        help="run N times with distinct seeds (--seed S gives S, S+1, ...; "
        "otherwise N fresh random seeds), one run folder each",
    )
    seeds.add_argument(
        "--seed-list",
        metavar="S1,S2,...",
        default=None if defaults else argparse.SUPPRESS,
        help="run once per listed seed",
    )


def run_flags(cfg: RunConfig) -> list[str]:
    """`ttabench run` flags that reproduce `cfg` (the fields that differ from the defaults)."""
    out = []
    defaults = RunConfig()
    for f in dataclasses.fields(RunConfig):
        v = getattr(cfg, f.name)
        if v == getattr(defaults, f.name):
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(v, bool):
            out.append(flag if v else "--no-" + f.name.replace("_", "-"))
        elif v is not None:
            out += [flag, str(v)]
    return out


def add_passed_run_flags(parser: argparse.ArgumentParser, help: str) -> None:
    """The `-- RUN FLAGS` an orchestrator passes on to `ttabench run` (read with parse_run_args)."""
    parser.add_argument("run_args", nargs=argparse.REMAINDER, metavar="-- RUN FLAGS", help=help)


# `ttabench run` flags that start several runs or continue an old one: an orchestrator
# (sweep, netlab run) starts exactly one run per point or node.
_ONE_RUN_EACH = {"resume_dir": "--resume", "seeds": "--seeds", "seed_list": "--seed-list"}


@dataclass
class RunArgs:
    """The `ttabench run` flags an orchestrator passes on (after ``--``), parsed and checked."""

    argv: list[str]  # as the user gave them, without a leading "--"
    given: frozenset  # the RunConfig fields they set (argparse abbreviations resolved)
    config: RunConfig  # with the orchestrator's own flags applied


def parse_run_args(
    argv: list[str], *, owner: str, unit: str, controlled: Iterable[str] = (), fixed: Iterable[str] = ()
) -> RunArgs:
    """Parse the flags after ``--`` with the `ttabench run` parser, refusing the flags `owner`
    sets itself for each `unit` (`controlled`, e.g. "--workers"), then validate them
    together with `fixed` (`owner`'s own flags for one unit) as `ttabench run` would."""
    argv = list(argv[1:] if argv[:1] == ["--"] else argv)
    given = vars(_run_parser(defaults=False).parse_args(argv))
    for dest in given:
        if dest in _ONE_RUN_EACH:
            raise UserError(
                f"{owner} starts one run per {unit}: leave {_ONE_RUN_EACH[dest]} out of the flags after --"
            )
        flag = "--" + dest.replace("_", "-")
        if flag in controlled:
            raise UserError(f"{owner} sets {flag} for each {unit} itself: leave it out of the flags after --")
    cfg = from_args(_run_parser().parse_args(list(fixed) + argv))
    cfg.validate()
    return RunArgs(argv, frozenset(given), cfg)


class _RunFlagsParser(usage.Parser):
    """The `ttabench run` flags inside another command: a mistake is one UserError line."""

    def error(self, message):
        raise UserError(f"bad `ttabench run` flags after --: {usage.one_line(message)}")


def _run_parser(defaults: bool = True) -> argparse.ArgumentParser:
    p = _RunFlagsParser(prog="ttabench run", add_help=False)
    add_run_flags(p, defaults=defaults)
    return p


def resume_config(run_dir: str) -> RunConfig:
    """The configuration of a run folder, set to continue it from its checkpoint."""
    if not os.path.isfile(os.path.join(run_dir, "config.json")):
        raise UserError(f"not a run folder (no config.json): {run_dir}")
    if not os.path.isfile(os.path.join(run_dir, CHECKPOINT_FILE)):
        raise UserError(
            f"{run_dir} has no {CHECKPOINT_FILE} to resume from (runs write one with --checkpoint-every)"
        )
    summary_path = os.path.join(run_dir, "summary.json")
    status = read_json(summary_path).get("status") if os.path.exists(summary_path) else None
    if status in ("success", "diverged"):
        raise UserError(f"{run_dir} already finished ({status}); nothing to resume")
    saved = read_json(os.path.join(run_dir, "config.json")).get("config")
    if not isinstance(saved, dict):
        raise UserError(f"{run_dir}/config.json has no 'config' to resume with")
    cfg = dataclasses.replace(RunConfig.from_dict(saved), run_dir=os.path.abspath(run_dir), resume=True)
    cfg.validate()
    return cfg
