# Copyright (c) mmakd contributors. All rights reserved.
"""MultiTeacherDistillValLoop: every teacher evaluated and logged under its
own name; with one teacher, exactly MMRazor's SingleTeacherDistillValLoop."""
import os.path as osp
from types import SimpleNamespace
from typing import Any, List, Sequence

import pytest
import torch
from mmengine.evaluator import BaseMetric, Evaluator
from mmengine.model import BaseModel
from mmengine.structures import BaseDataElement
from mmrazor.engine import SingleTeacherDistillValLoop
from torch import nn
from torch.utils.data import DataLoader

from mmakd.engine import MultiTeacherDistillValLoop
from mmakd.registry import LOOPS
from mmakd.utils import load_config
from helpers import REPO, demo_options

ENSEMBLE = ('configs/akd/demo/cwd_fpn_4xretinanet-r18-w32_retinanet-r18-w8_'
            '1xb8-400it_shapes-128.py')


class Constant(BaseModel):
    """Predicts ``value`` for every input."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self,
                inputs: torch.Tensor,
                data_samples: Any = None,
                mode: str = 'tensor') -> List[BaseDataElement]:
        return [BaseDataElement(score=self.value) for _ in inputs]


class Distill(Constant):
    """A student (``value``) with one teacher, or several (``teachers``,
    as MultiTeacherDistill has)."""

    def __init__(self, value: float, teachers: Sequence[float],
                 several: bool) -> None:
        super().__init__(value)
        self.teacher = Constant(teachers[0])
        self.other_teachers = nn.ModuleList(map(Constant, teachers[1:]))
        self.several = several

    def __getattr__(self, name: str) -> Any:
        if name == 'teachers' and self.several:
            return [self.teacher, *self.other_teachers]
        return super().__getattr__(name)


class Score(BaseMetric):
    default_prefix = 'toy'

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        self.results += [s['score'] for s in data_samples]

    def compute_metrics(self, results: list) -> dict:
        return dict(score=sum(results) / len(results))


def _run(loop_type, model):
    hooks = []
    runner = SimpleNamespace(
        model=model,
        distributed=False,
        visualizer=SimpleNamespace(),
        call_hook=lambda name, **kwargs: hooks.append((name, kwargs)))
    loader = DataLoader(
        [torch.zeros(1)] * 4,
        batch_size=2,
        collate_fn=lambda b: dict(inputs=torch.stack(b)))
    loop = loop_type(runner, loader, Evaluator([Score()]))
    loop.run()
    (logged, ) = [k['metrics'] for n, k in hooks if n == 'after_val_epoch']
    return logged, [name for name, _ in hooks], loop


def test_every_teacher_is_evaluated_under_its_own_name():
    model = Distill(1.0, [10.0, 20.0, 30.0], several=True)
    logged, hooks, loop = _run(MultiTeacherDistillValLoop, model)
    assert logged == {
        'toy/score': 1.0,
        'teacher0.toy/score': 10.0,
        'teacher1.toy/score': 20.0,
        'teacher2.toy/score': 30.0
    }
    assert hooks.count('before_val_epoch') == 4  # the student + 3 teachers
    assert hooks.count('after_val_iter') == 4 * 2  # 2 batches each
    for teacher in model.teachers:  # every model sees the same inputs
        assert teacher.data_preprocessor is model.data_preprocessor
    # MMRazor's loop logs teacher 0 alone, as if it were "the teacher"
    model = Distill(1.0, [10.0, 20.0, 30.0], several=True)
    mmrazor, _, _ = _run(SingleTeacherDistillValLoop, model)
    assert mmrazor == {'toy/score': 1.0, 'teacher.toy/score': 10.0}


def test_one_teacher_is_mmrazors_loop():
    ours = _run(MultiTeacherDistillValLoop,
                Distill(1.0, [10.0], several=False))
    theirs = _run(SingleTeacherDistillValLoop,
                  Distill(1.0, [10.0], several=False))
    assert ours[0] == theirs[0] == {
        'toy/score': 1.0,
        'teacher.toy/score': 10.0
    }
    assert ours[1] == theirs[1]  # the same hooks in the same order


def test_registered_and_refuses_a_model_without_teacher():
    assert LOOPS.get('MultiTeacherDistillValLoop') is \
        MultiTeacherDistillValLoop
    with pytest.raises(TypeError, match="val_cfg=dict\\(type='ValLoop'\\)"):
        _run(MultiTeacherDistillValLoop, Constant(1.0))


def test_shipped_ensemble_config_logs_every_teacher(tmp_path, shapes_root):
    """The demo's ensemble config validates with this loop: a real run of
    validation (4 random teachers, the shapes data) logs each teacher's
    bbox mAP as teacher<i>.coco/bbox_mAP, and no teacher.coco/bbox_mAP."""
    from mmengine.runner import Runner
    cfg = load_config(
        osp.join(REPO, ENSEMBLE),
        demo_options(
            shapes_root, 1, **{
                'model.teacher_ckpts': [None] * 4,
                'val_evaluator.ann_file':
                osp.join(shapes_root, 'annotations/instances_val.json')
            }))
    assert cfg.val_cfg.type.split('.')[-1] == 'MultiTeacherDistillValLoop'
    cfg.work_dir = str(tmp_path / 'work')
    cfg.experiment_name = f'ensemble-val-{tmp_path.name}'
    runner = Runner.from_cfg(cfg)
    metrics = runner.val()
    assert 'coco/bbox_mAP' in metrics
    assert 'teacher.coco/bbox_mAP' not in metrics
    for i in range(4):
        assert isinstance(metrics[f'teacher{i}.coco/bbox_mAP'], float)
    assert not any(k.startswith('teacher4.') for k in metrics)
