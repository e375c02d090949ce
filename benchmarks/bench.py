"""Throughput benchmark: the same as `simrec bench`, runnable from a checkout.

    python benchmarks/bench.py --images 96 --batch-size 32 --precision float32

Prints one line per figure and a final `ratio ...` line, all measured in this one run.
"""

import sys

from simrec.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
