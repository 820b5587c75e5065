# Copyright (c) mmakd contributors. All rights reserved.
"""mmakd's demo and teacher-ensemble study (``tools/demo.py``)."""
from .ensemble import (ARMS, ENSEMBLE, ensemble_markdown, ensemble_options,
                       ensemble_summary, run_ensemble)
from .main import run_demo
from .runs import progress, run_task, say
from .tables import CROSS_MACHINE, markdown, metric_value, plot
from .tasks import (DEMO, DET, MGKD, SHAPES_DESC, SHAPES_SIZES, TASKS,
                    TEACHER_CKPT, generate, run_options)

__all__ = [
    'ARMS', 'ENSEMBLE', 'ensemble_markdown', 'ensemble_options',
    'ensemble_summary', 'run_ensemble', 'run_demo', 'progress', 'run_task',
    'say', 'CROSS_MACHINE', 'markdown', 'metric_value', 'plot', 'DEMO', 'DET',
    'MGKD', 'SHAPES_DESC', 'SHAPES_SIZES', 'TASKS', 'TEACHER_CKPT', 'generate',
    'run_options'
]
