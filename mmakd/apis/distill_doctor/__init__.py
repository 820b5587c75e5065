# Copyright (c) mmakd contributors. All rights reserved.
"""A distillation doctor: why each loss of a config may not help.

It runs a few training steps of a distillation config at learning rate 0
and says, loss by loss, why it may not help. Used by
``tools/analysis_tools/analyze_distill.py``; see ``docs/user_guide.md``
("Diagnose a distillation that does not help") for how to read the report.
Every number comes from the model the config builds, on real batches of its
training dataloader or on generated ones (``fake_data``).
"""
from ..offline_weights import offline_model_config
from .analyze import analyze_distill
from .data import default_fake_size
from .plot import plot_grad_shares
from .probes import cosine_similarity, tensor_stats
from .report import format_report, markdown_report
from .rules import (CONSTANT_RTOL, RULES, SCALE_RATIO, SHARE_MAX, SHARE_MIN,
                    WARNING_KINDS, ZERO, diagnose)

__all__ = [
    'analyze_distill', 'diagnose', 'format_report', 'markdown_report',
    'plot_grad_shares', 'tensor_stats', 'cosine_similarity',
    'default_fake_size', 'offline_model_config', 'SHARE_MAX', 'SHARE_MIN',
    'SCALE_RATIO', 'ZERO', 'CONSTANT_RTOL', 'WARNING_KINDS', 'RULES'
]
