"""Finding a user's code: a ``MODULE:CALLABLE`` or ``path/to/file.py:CALLABLE``
reference, imported, with the one-line errors that keep the user's traceback.

A module name is imported with the current folder on the path; a file is
executed as a module, its folder put first on the path as ``python file.py``
would. The record returned with the object (config.json's "submission") names
the file and the SHA-256 of the bytes that ran.

What the user can get wrong here, and the one line each ends in (FLAG is
``--model`` or ``--optimizer``; the other terms are explained in open.py):

| problem                                   | message                                                                                       |
|-------------------------------------------|-----------------------------------------------------------------------------------------------|
| reference without ``:``                   | ``FLAG must be MODULE:CALLABLE or path/to/file.py:CALLABLE, got 'REF'``                        |
| file not found                            | ``FLAG REF: file not found: ABSPATH``                                                          |
| module not found                          | ``FLAG REF: no module named 'MODULE' (run from its folder, add it to PYTHONPATH, or give path/to/file.py:CALLABLE)`` |
| syntax error in the user's code           | ``FLAG REF: syntax error in FILE, line N: MESSAGE``                                            |
| import raised                             | ``FLAG REF: importing TARGET raised ERROR``                                                    |
| attribute missing                         | ``FLAG REF: TARGET has no attribute 'NAME'; it has: CALLABLES``                               |
| attribute missing, file has no callable   | ``FLAG REF: TARGET has no attribute 'NAME'; it defines no callable``                          |
"""

from __future__ import annotations

import hashlib
import importlib
import os
import re
import sys
import traceback
import types
from typing import Any, NamedTuple

from ttabench import UserError, error_line


class Ref(NamedTuple):
    target: str  # a module name or a file path, as given
    attr: str  # the attribute, possibly dotted
    is_file: bool


_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_DOTTED = re.compile(rf"^{_IDENT}(\.{_IDENT})*$")


def parse_ref(ref: str, flag: str) -> Ref:
    """'pkg.mod:fn' or 'path/to/file.py:fn' -> Ref; UserError for anything else (no import)."""
    target, sep, attr = ref.rpartition(":")
    if not sep or not target or not _DOTTED.match(attr):
        raise UserError(f"{flag} must be MODULE:CALLABLE or path/to/file.py:CALLABLE, got {ref!r}")
    is_file = target.endswith(".py") or "/" in target or os.sep in target
    if not is_file and not _DOTTED.match(target):
        raise UserError(f"{flag} must be MODULE:CALLABLE or path/to/file.py:CALLABLE, got {ref!r}")
    return Ref(target, attr, is_file)


def kind(x) -> str:
    """'None', 'a list', 'an int': how a message names what the user's code gave."""
    if x is None:
        return "None"
    name = type(x).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def user_error(message: str, cause: BaseException | None = None) -> UserError:
    """A UserError carrying the user's own traceback (printed under --debug)."""
    err = UserError(message)
    err.user_traceback = (
        "".join(traceback.format_exception(type(cause), cause, cause.__traceback__))
        if cause is not None
        else None
    )
    err.__cause__ = cause
    return err


def _sha256(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


def load_object(ref: str, flag: str, offered: tuple[type, ...] = ()) -> tuple[Any, dict]:
    """Import the reference's target and return (object, source record for config.json).
    A missing attribute's message lists the module's callables and its objects of the
    `offered` types."""
    r = parse_ref(ref, flag)
    where = f"{flag} {ref}"
    if r.is_file:
        module, source = _exec_file(r, ref, where)
    else:
        module, source = _import_module(r, ref, where)
    obj = module
    for part in r.attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise user_error(
                f"{where}: {r.target} has no attribute {r.attr!r}{_offer(module, offered)}"
            ) from None
        except Exception as e:  # a module __getattr__ or property of the user's
            raise user_error(f"{where}: {r.target} has no attribute {r.attr!r}", e) from e
    return obj, source


def _exec_file(r: Ref, ref: str, where: str) -> tuple[types.ModuleType, dict]:
    path = os.path.abspath(r.target)
    try:
        with open(path, "rb") as f:
            code = f.read()
    except FileNotFoundError:
        raise user_error(f"{where}: file not found: {path}") from None
    except OSError as e:
        raise user_error(f"{where}: cannot read {path}: {e.strerror}", e) from e
    digest = hashlib.sha256(code).hexdigest()
    stem = re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
    name = f"_ttabench_submission_{stem}_{digest[:12]}"
    module = types.ModuleType(name)
    module.__file__ = path
    folder = os.path.dirname(path)
    if folder not in sys.path:
        sys.path.insert(0, folder)  # as `python file.py` would: its neighbours import
    sys.modules[name] = module  # dataclasses and pickle look classes up there
    try:
        # The bytes that were hashed are the bytes that run.
        exec(compile(code, path, "exec"), module.__dict__)
    except SyntaxError as e:
        del sys.modules[name]
        raise user_error(f"{where}: syntax error in {e.filename}, line {e.lineno}: {e.msg}", e) from e
    except (Exception, SystemExit) as e:
        del sys.modules[name]
        raise user_error(f"{where}: importing {r.target} raised {error_line(e)}", e) from e
    return module, {"ref": ref, "kind": "file", "path": path, "attribute": r.attr, "sha256": digest}


def _import_module(r: Ref, ref: str, where: str) -> tuple[types.ModuleType, dict]:
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())  # `ttabench` as a console script has no cwd on its path
    try:
        module = importlib.import_module(r.target)
    except ModuleNotFoundError as e:
        if e.name and (r.target == e.name or r.target.startswith(e.name + ".")):
            raise user_error(
                f"{where}: no module named {r.target!r} (run from its folder, add it "
                "to PYTHONPATH, or give path/to/file.py:CALLABLE)",
                e,
            ) from e
        raise user_error(f"{where}: importing {r.target} raised {error_line(e)}", e) from e
    except SyntaxError as e:
        raise user_error(f"{where}: syntax error in {e.filename}, line {e.lineno}: {e.msg}", e) from e
    except (Exception, SystemExit) as e:
        raise user_error(f"{where}: importing {r.target} raised {error_line(e)}", e) from e
    path = getattr(module, "__file__", None)
    return module, {
        "ref": ref,
        "kind": "module",
        "module": r.target,
        "path": os.path.abspath(path) if path else None,
        "attribute": r.attr,
        "sha256": _sha256(path) if path else None,
    }


def _offer(module, offered: tuple[type, ...]) -> str:
    """'; it has: a, b' -- the callables (and `offered` objects) defined in the user's module."""
    names = sorted(
        name
        for name, v in vars(module).items()
        if not name.startswith("_")
        and (isinstance(v, offered) or (callable(v) and getattr(v, "__module__", None) == module.__name__))
    )
    return f"; it has: {', '.join(names)}" if names else "; it defines no callable"
