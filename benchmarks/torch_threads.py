"""Imported by the benchmarks: PyTorch uses one thread per core, stated in the output."""

import os

try:
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
except ImportError:
    pass
