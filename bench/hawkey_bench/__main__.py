"""`python3 bench/hawkey_bench [...]`, or `python3 -m hawkey_bench [...]`
with bench/ on the path: see cli.py."""

import os
import sys


def run():
    if not __package__:
        # Run as a folder: sys.path[0] is this folder, and the package's
        # own imports need its parent there instead.
        sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    from hawkey_bench.cli import main
    return main()


sys.exit(run())
