"""Run under torchrun by tests/test_distributed.py: several `genlab train` runs in one launch.

Usage: torchrun --standalone --nproc_per_node N tests/ddp_worker.py OUT_ROOT NAME... ;
each NAME is one of the RUNS in test_distributed.py. Registers the toy families first.
"""

import sys

import toy_families  # noqa: F401  (registers toy-gan and toy-encoder)
from genlab.cli import main
from test_distributed import RUNS

if __name__ == "__main__":
    root = sys.argv[1]
    for name in sys.argv[2:]:
        argv = [*RUNS[name], "--out", f"{root}/{name}", "--no-progress"]
        if main(argv) != 0:
            sys.exit(1)
