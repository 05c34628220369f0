"""Every `ttabench ...` command and flag that README.md or a help text mentions exists in the
real parser (launch/cli.py build_parser), so the docs cannot drift from the CLI."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from ttabench.launch.cli import build_parser
from ttabench.launch.usage import options, subcommands

ROOT = Path(__file__).resolve().parent.parent
# `ttabench` followed by a space and the rest of the mention (up to a comment or a closing backtick).
MENTION = re.compile(r"(?<![\w./-])ttabench((?: +[^\s`#]+)+)")


def code(text: str) -> str:
    """The code in Markdown or help text, one piece a line: `inline spans`, indented and
    fenced code blocks (continued lines joined). Prose ("ttabench runs ...") is left out."""
    text = re.sub(r"\\\n\s*", " ", text)
    pieces, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif fenced or line.startswith("    "):
            if not line.lstrip().startswith("#"):  # a comment, or output shown as one
                pieces.append(line)
        else:
            pieces += re.findall(r"`([^`]+)`", line)
    return "\n".join(pieces)


def mentions(text: str) -> list[str]:
    """The argument part of every `ttabench ARGS` in the code of `text`."""
    return [" ".join(m.group(1).split()) for m in MENTION.finditer(code(text))]


def problems(parser: argparse.ArgumentParser, args: str) -> list[str]:
    """What in `ttabench ARGS` the parser does not know: a command or a flag."""
    found, current, run = [], parser, subcommands(parser)["run"]
    for token in args.split():
        if token == "--":  # sweep, netlab run: the rest are `ttabench run` flags
            current = run
        elif token.startswith("--") and len(token) > 2:
            flag = token.split("=", 1)[0].rstrip(",.;:)")
            if flag not in options(current):
                found.append(f"{current.prog}: no flag {flag}")
        elif token == "..." or re.fullmatch(r"[A-Z][A-Z_]*", token):
            break  # a placeholder (`ttabench COMMAND --help`, `ttabench ...`): nothing more to check
        elif subcommands(current) and not token.startswith("-"):
            names = token.split("|")
            if not all(n in subcommands(current) for n in names):
                found.append(f"{current.prog}: no command {token}")
                break
            current = subcommands(current)[names[0]]
    return found


def help_texts(parser: argparse.ArgumentParser):
    """(where, text) for the description and every option's help of every (sub)parser."""
    yield parser.prog, parser.description or ""
    for action in parser._actions:
        if action.help and action.help != argparse.SUPPRESS:
            yield f"{parser.prog} {'/'.join(action.option_strings) or action.dest}", action.help
    for sub in subcommands(parser).values():
        yield from help_texts(sub)


def test_mention_parsing_catches_what_does_not_exist():
    parser = build_parser()
    text = "ttabench runs it: see `ttabench network list` or\n\n    ttabench run --max-epochs 2 \\\n  --seeds 3  # x"
    assert mentions(text) == [
        "network list",
        "run --max-epochs 2 --seeds 3",
    ]
    assert problems(parser, "network list") == ["ttabench: no command network"]
    assert problems(parser, "run --epochs 3") == ["ttabench run: no flag --epochs"]
    assert problems(parser, "sweep --out s1 -- --workers 2 --bogus") == ["ttabench run: no flag --bogus"]
    assert problems(parser, "netlab up|down|status") == []
    assert problems(parser, "COMMAND --help") == []
    assert problems(parser, "--debug run --synthetic --no-channels-last") == []


def test_every_readme_mention_exists():
    text = (ROOT / "README.md").read_text()
    found = mentions(text)
    assert len(found) > 30  # the README shows every command
    commands = {args.split()[0] for args in found}
    assert set(subcommands(build_parser())) <= commands | {"--debug"}, "a command the README never shows"
    bad = [p for args in found for p in problems(build_parser(), args)]
    assert bad == []


# One case per `ttabench ...` that a help text mentions (most help texts mention none).
HELP_MENTIONS = [(where, args) for where, text in help_texts(build_parser()) for args in mentions(text)]


def test_help_texts_do_mention_commands():
    """The cases below are real mentions: if mentions() stopped finding them, this fails."""
    assert len(HELP_MENTIONS) >= 10, HELP_MENTIONS


@pytest.mark.parametrize("where,args", HELP_MENTIONS, ids=[f"{w}: {a}" for w, a in HELP_MENTIONS])
def test_every_help_text_mention_exists(where, args):
    assert problems(build_parser(), args) == [], where


def layout_section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("## Layout")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else len(text)]


def test_layout_names_every_module_and_only_modules_that_exist():
    layout = layout_section()
    named = set(re.findall(r"[\w/]+\.py", layout))
    for top in ("launch", "divisions", "reference_impls", "benchmarks"):
        for f in sorted((ROOT / top).rglob("*.py")):
            if f.name == "__init__.py":
                continue
            rel = f.relative_to(ROOT / top).as_posix()
            assert rel in named or f.name in named, f"README Layout does not name {top}/{rel}"
    tops = (
        "",
        "launch",
        "launch/worker",
        "launch/record",
        "launch/commands",
        "launch/cluster",
        "divisions",
        "reference_impls",
        "benchmarks",
    )
    for name in named - {"setup.py"}:
        assert any((ROOT / t / name).is_file() for t in tops), (
            f"README Layout names {name}, which does not exist"
        )
