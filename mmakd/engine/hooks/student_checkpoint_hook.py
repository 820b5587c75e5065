# Copyright (c) mmakd contributors. All rights reserved.
"""A student-only checkpoint when a distillation run ends."""
import logging
import os.path as osp
from typing import Optional

from mmengine.dist import master_only
from mmengine.hooks import Hook
from mmengine.logging import print_log

from mmakd.registry import HOOKS
from mmakd.utils.checkpoint import convert_kd_checkpoint
from .atomic_checkpoint_hook import PART, publish

__all__ = ['StudentCheckpointHook']


@HOOKS.register_module()
class StudentCheckpointHook(Hook):
    """Write the student of the last checkpoint next to it when training
    ends: ``iter_N.pth`` gives ``iter_N_student.pth``, ready for the
    student's own config (``tools/test.py STUDENT_CONFIG
    iter_N_student.pth``) and for deployment.

    The file is what ``tools/model_converters/convert_kd_ckpt_to_student.py``
    writes (the student's ``state_dict`` and the checkpoint's ``meta``),
    written whole or not at all. The last checkpoint is the one
    ``last_checkpoint`` in the work directory names; without one (nothing
    saved) or with a remote one, a warning says why nothing was written.
    One-command distillation (``tools/train.py STUDENT --teacher T``) adds
    this hook to the config it generates.

    Args:
        prefix (str): Prefix of the student's keys in the distillation
            checkpoint. Defaults to ``'architecture.'`` (MMRazor's).
    """

    priority = 'VERY_LOW'  # after CheckpointHook has saved the last one

    def __init__(self, prefix: str = 'architecture.') -> None:
        self.prefix = prefix
        self.written: Optional[str] = None

    @master_only
    def after_train(self, runner) -> None:
        pointer = osp.join(runner.work_dir, 'last_checkpoint')
        last = ''
        if osp.isfile(pointer):
            with open(pointer) as f:
                last = f.read().strip()
        if not last or '://' in last or not osp.isfile(last):
            why = f'{last} is not a local file' if last else \
                'no checkpoint was saved'
            print_log(
                f'StudentCheckpointHook: no student checkpoint: {why}.',
                logger='current',
                level=logging.WARNING)
            return
        out = osp.splitext(last)[0] + '_student.pth'
        summary = convert_kd_checkpoint(last, out + PART, self.prefix)
        publish(out + PART, out)
        self.written = out
        print_log(
            f'wrote {out}: the student of {osp.basename(last)} '
            f'({summary["num_tensors"]} tensors, '
            f'{summary["num_params"] / 1e6:.2f}M values; left out '
            f'{", ".join(summary["dropped"]) or "nothing"})',
            logger='current')
