"""tuina: vision-guided robotic massage as a dora-rs dataflow."""

import os

# numpy's and scipy's BLAS on one thread unless the environment says otherwise: the graph's
# nodes share a few cores, and a BLAS that spreads a small matrix over threads which are
# busy with the other nodes waits for them (a 2400 x 11 SVD of the body fit took 100 ms on
# two threads of a busy 2-core machine, 0.5 ms on one). Set before any node imports numpy:
# importing a tuina module runs this first.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
