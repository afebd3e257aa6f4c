"""`python trial/run.py ARGS` is `trial run ARGS` (also what `ray job submit` runs)."""
from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    # Run as a script, Python puts trial/ itself first on sys.path, where trial/datasets.py
    # would shadow the `datasets` package: put the project root there instead.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)
    from trial.cli import exit_now, main

    exit_now(main(["run", *sys.argv[1:]]))
