# Copyright (c) mmakd contributors. All rights reserved.
"""Validate the student and every teacher of a distillation algorithm."""
from typing import Dict, List, Sequence, Union

import torch
from mmengine.evaluator import Evaluator
from mmengine.runner import ValLoop, autocast
from torch import nn
from torch.utils.data import DataLoader

from mmakd.registry import LOOPS

__all__ = ['MultiTeacherDistillValLoop']


@LOOPS.register_module()
class MultiTeacherDistillValLoop(ValLoop):
    """MMRazor's ``SingleTeacherDistillValLoop`` for every teacher.

    MMRazor's loop evaluates ``model.teacher`` only and logs its metrics as
    ``teacher.<metric>``: for :class:`~mmakd.models.MultiTeacherDistill`
    that is the first teacher alone, under a name that reads as the
    ensemble's. This loop evaluates the student (metrics logged plainly)
    and then each teacher in turn on the same dataloader and evaluator:

    - a model with several teachers (``model.teachers``, as
      ``MultiTeacherDistill`` has) logs ``teacher0.<metric>``,
      ``teacher1.<metric>``, ... in the order of ``model.teachers``. The
      ensemble itself (the mean of the teachers' records) is no model with
      predictions of its own, so nothing is logged for it;
    - a model with one teacher behaves exactly as MMRazor's loop:
      ``teacher.<metric>``.

    As in MMRazor's loop, each teacher's ``data_preprocessor`` is set to the
    algorithm's, so that every model sees the inputs the student sees.

    Args:
        runner (Runner): A reference of runner.
        dataloader (Dataloader or dict): A dataloader object or a dict to
            build a dataloader.
        evaluator (Evaluator or dict or list): Used for computing metrics.
        fp16 (bool): Whether to enable fp16 validation. Defaults to
            False.
    """

    def __init__(self,
                 runner,
                 dataloader: Union[DataLoader, Dict],
                 evaluator: Union[Evaluator, Dict, List],
                 fp16: bool = False) -> None:
        super().__init__(runner, dataloader, evaluator, fp16)
        model = self.runner.model.module if self.runner.distributed else \
            self.runner.model
        if not hasattr(model, 'teacher'):
            raise TypeError(
                f'val_cfg.type=MultiTeacherDistillValLoop validates the '
                f'teachers of a distillation algorithm, but model '
                f'({type(model).__name__}) has no teacher; use '
                "val_cfg=dict(type='ValLoop').")
        teachers = getattr(model, 'teachers', None)
        self.teachers: List[nn.Module] = list(teachers) if teachers else [
            model.teacher
        ]
        # TODO (as MMRazor): every model preprocesses as the algorithm does
        for teacher in self.teachers:
            teacher.data_preprocessor = model.data_preprocessor
        self.prefixes = ['teacher.'] if len(self.teachers) == 1 else [
            f'teacher{i}.' for i in range(len(self.teachers))
        ]

    def run(self) -> dict:
        """Launch validation: the student, then every teacher.

        Returns:
            dict: The student's metrics, and each teacher's under its
            prefix.
        """
        self.runner.call_hook('before_val')
        self.runner.call_hook('before_val_epoch')
        self.runner.model.eval()
        for idx, data_batch in enumerate(self.dataloader):
            self.run_iter(idx, data_batch)
        # compute student metrics
        metrics = self.evaluator.evaluate(len(self.dataloader.dataset))
        for teacher, prefix in zip(self.teachers, self.prefixes):
            self.runner.call_hook('before_val_epoch')
            for idx, data_batch in enumerate(self.dataloader):
                self.run_iter_teacher(idx, data_batch, teacher)
            teacher_metrics = self.evaluator.evaluate(
                len(self.dataloader.dataset))
            for key, value in teacher_metrics.items():
                metrics[prefix + key] = value
        self.runner.call_hook('after_val_epoch', metrics=metrics)
        self.runner.call_hook('after_val')
        return metrics

    @torch.no_grad()
    def run_iter_teacher(self, idx: int, data_batch: Sequence[dict],
                         teacher: nn.Module) -> None:
        """Run one teacher on one mini-batch.

        Args:
            idx (int): The index of the batch.
            data_batch (Sequence[dict]): Batch of data from dataloader.
            teacher (nn.Module): The teacher to run.
        """
        self.runner.call_hook(
            'before_val_iter', batch_idx=idx, data_batch=data_batch)
        with autocast(enabled=self.fp16):
            # outputs should be sequence of BaseDataElement
            outputs = teacher.val_step(data_batch)
        self.evaluator.process(data_samples=outputs, data_batch=data_batch)
        self.runner.call_hook(
            'after_val_iter',
            batch_idx=idx,
            data_batch=data_batch,
            outputs=outputs)
