# Copyright (c) mmakd contributors. All rights reserved.
from .experiment import (RunResult, find_checkpoint, final_metrics,
                         paired_summary, read_scalars, to_cli_options, train)

__all__ = [
    'RunResult', 'find_checkpoint', 'final_metrics', 'paired_summary',
    'read_scalars', 'to_cli_options', 'train'
]
