"""`python -m ttabench.launch.worker`: one worker of a run (see main.py)."""

import sys

from ttabench.launch.worker.main import entry

sys.exit(entry())
