"""`ttabench env`: print the system description that results record."""

from __future__ import annotations

import json

from ttabench.launch import system
from ttabench.launch.usage import add_command


def _cmd_env(args) -> int:
    desc = system.describe()
    desc["system_name"] = system.default_system_name(desc)
    print(json.dumps(desc, indent=2))
    return 0


def add_commands(sub) -> None:
    add_command(sub, "env", _cmd_env, help="print the system description recorded with results")
