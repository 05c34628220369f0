"""The `ttabench` argument parser: a mistake on the command line is one line that says what to do.

argparse alone prints the whole usage (23 lines for `ttabench run`) and no suggestion. Here an
unknown flag gets "did you mean --max-epochs?" (difflib over the chosen command's options), an
invalid choice gets the close match and the valid choices on the same line. `add_command` registers a
subcommand with the handler that runs it; `json_flag` declares the --json they share.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys

_INVALID_CHOICE = re.compile(
    r"^argument (?P<arg>.+?): invalid choice: '(?P<value>.*)' \(choose from (?P<choices>.*)\)$"
)


def close_match(word: str, candidates) -> str | None:
    """The candidate nearest to `word`, or None when none is near enough."""
    found = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return found[0] if found else None


def comma_list(text: str | None) -> list[str]:
    """The values of a comma-separated flag: 'a, b,,c' -> ['a', 'b', 'c']; None or '' -> []."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def subcommands(parser: argparse.ArgumentParser) -> dict:
    """The subcommand parsers of `parser` by name ({} when it has none)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def options(parser: argparse.ArgumentParser) -> list[str]:
    """Every option string `parser` accepts (--max-epochs, --no-channels-last, -h, ...)."""
    return [s for action in parser._actions for s in action.option_strings]


def chosen_parser(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.ArgumentParser:
    """The (sub)parser the command line selects: `run --foo` -> the `run` parser."""
    for token in argv:
        if token == "--":
            break
        sub = subcommands(parser).get(token)
        if sub is not None:
            parser = sub
    return parser


def unknown_message(parser: argparse.ArgumentParser, argv: list[str], extras: list[str]) -> str:
    """One line for arguments no parser took, with the closest option of the chosen command."""
    chosen = chosen_parser(parser, argv)
    msg = f"unrecognized arguments: {' '.join(extras)}"
    flags = [x.split("=", 1)[0] for x in extras if x.startswith("-")]
    hints = [f"did you mean {m}?" for m in (close_match(f, options(chosen)) for f in flags) if m]
    return "; ".join([msg, *hints, f"`{chosen.prog} --help` lists every option"])


def one_line(message: str) -> str:
    """argparse's message, with an invalid choice's close match first and the choices unquoted."""
    m = _INVALID_CHOICE.match(message)
    if not m:
        return message
    choices = [c.strip().strip("'") for c in m["choices"].split(",")]
    near = close_match(m["value"], choices)
    hint = f" (did you mean {near}?)" if near else ""
    return f"argument {m['arg']}: invalid choice {m['value']!r}{hint}; choose from {', '.join(choices)}"


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``ttabench: error: ...``, exit 2) and suggestions."""

    def parse_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        ns, extras = self.parse_known_args(args, namespace)
        if extras:
            self.error(unknown_message(self, args, extras))
        return ns

    def error(self, message):
        self.exit(2, f"ttabench: error: {one_line(message)}\n")


def add_command(sub, name: str, func, **parser_args) -> argparse.ArgumentParser:
    """Add subcommand `name` to `sub` (an add_subparsers object), run by `func(args)`; help,
    description and the rest go to argparse as they are. Every command is registered here."""
    p = sub.add_parser(name, **parser_args)
    p.set_defaults(func=func)
    return p


def json_flag(parser: argparse.ArgumentParser) -> None:
    """--json, the same for every command that offers it: print one JSON object instead of text."""
    parser.add_argument("--json", action="store_true", help="print one JSON object")
