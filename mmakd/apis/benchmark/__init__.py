# Copyright (c) mmakd contributors. All rights reserved.
"""What a distillation step costs, and what Avatars add to it."""
from .cases import CASES, TEACHER_SOURCES, build_cases
from .report import format_table, markdown
from .run import run_benchmark
from .targets import OURS_LIMIT, TARGETS, check_targets, ensemble_vs_avatars
from .timing import step_peak_mb

__all__ = [
    'CASES', 'TEACHER_SOURCES', 'build_cases', 'format_table', 'markdown',
    'run_benchmark', 'OURS_LIMIT', 'TARGETS', 'check_targets',
    'ensemble_vs_avatars', 'step_peak_mb'
]
