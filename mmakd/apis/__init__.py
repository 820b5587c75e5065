# Copyright (c) mmakd contributors. All rights reserved.
from .distill_doctor import analyze_distill
from .experiment import (RunResult, final_metrics, find_checkpoint,
                         paired_summary, portable_command, read_scalars,
                         relative_path, to_cli_options, train)

__all__ = [
    'analyze_distill', 'RunResult', 'find_checkpoint', 'final_metrics',
    'paired_summary', 'portable_command', 'read_scalars', 'relative_path',
    'to_cli_options', 'train'
]
