# Copyright (c) mmakd contributors. All rights reserved.
"""A CUDA acceptance kit: everything a GPU machine without network needs to
prove mmakd in minutes (``tools/misc/cuda_check.py``), and the wheel folder
it installs from (``tools/misc/make_cuda_wheels.py``)."""
from .run import run_steps, summary_line
from .steps import BENCH_PAIRS, Step, plan_steps

__all__ = ['BENCH_PAIRS', 'Step', 'plan_steps', 'run_steps', 'summary_line']
