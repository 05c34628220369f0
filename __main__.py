"""`python -m ttabench` is the `ttabench` command."""

import sys

from ttabench.launch.cli import main

sys.exit(main())
