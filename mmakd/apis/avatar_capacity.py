# Copyright (c) mmakd contributors. All rights reserved.
"""The "working capacity" of a teacher's Avatars (AKD, Zhang et al., ACM MM
2023, https://arxiv.org/abs/2305.02722, claim that Avatars "own higher
upper limit of working capacity" than the teacher): a trained teacher is
evaluated with one recorded tensor replaced by the uncertainty-weighted
mixture of its Avatars, e.g. a detector's FPN levels feeding its own head,
or a segmentor's logits as its prediction."""
import copy
import json
import os.path as osp
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
from mmengine.config import Config
from mmrazor.models.task_modules.recorder import RecorderManager
from torch import Tensor, nn

from mmakd.models.avatars import (avatar_uncertainty, avatar_weights,
                                  build_perturbation, record_teacher_avatars,
                                  teacher_avatar_draws)
from mmakd.models.avatars.seeding import seeded_generator
from mmakd.models.utils.teacher_forward import run_forward, shortest_forward
from .experiment import machine_description, portable_path

__all__ = [
    'AvatarMixture', 'CAPACITY_ROWS', 'capacity_table', 'capacity_markdown'
]

KEY = 'perturbation'

#: The rows of the capacity table: name, perturbation (None: the teacher
#: alone) and what it is.
CAPACITY_ROWS: List[Dict[str, Any]] = [
    dict(name='vanilla', perturbation=None, label='the teacher'),
    *[
        dict(
            name=f'dropout_k{k}',
            perturbation=dict(type='AvatarDropout', p=0.1, num_avatars=k),
            label=f'feature dropout p = 0.1, K = {k}') for k in (1, 4, 8)
    ],
    *[
        dict(
            name=f'hetero_k{k}',
            perturbation=dict(
                type='AvatarDropout', p=(0.05, 0.1, 0.2, 0.4) * (k // 4)),
            label=f'feature dropout p = (0.05, 0.1, 0.2, 0.4), K = {k}')
        for k in (4, 8)
    ],
    dict(
        name='flip',
        perturbation=dict(type='TeacherViews', flip=True),
        label='views: original + flip, K = 2'),
    dict(
        name='scales',
        perturbation=dict(
            type='TeacherViews', flip=False, scales=(0.75, 1.0, 1.25)),
        label='views: scales 0.75, 1, 1.25, K = 3'),
    dict(
        name='scales_flip',
        perturbation=dict(
            type='TeacherViews', flip=True, scales=(0.75, 1.0, 1.25)),
        label='views: scales 0.75, 1, 1.25, each + flip, K = 6'),
    *[
        dict(
            name=f'mc_k{k}',
            perturbation=dict(type='TeacherDropout', p=0.1, num_avatars=k),
            label=f'in-network dropout p = 0.1 (backbone stages), K = {k}')
        for k in (1, 4, 8)
    ],
]


class AvatarMixture:
    """Replace the output of ``target`` in ``model``'s predictions by the
    weighted mixture ``sum_k w_k A_k`` of its ``K`` Avatars.

    Before each ``mode='predict'`` forward, the teacher runs as far as
    ``target`` (its shortest forward) to draw the Avatars (the
    perturbation's, of the recorded tensor, or a source's runs of the
    teacher); the weights are AKD's (per level of a tuple, as the demo
    configs' per-level losses; ``tau=None`` for equal ones; the reference
    of the drift is the teacher's tensor, or the Avatars' mean for a
    source, as in training). Randomness comes from a generator seeded by
    ``seed`` and the batch's index.

    Args:
        model (nn.Module): The teacher (an MMDetection / MMSegmentation
            model).
        target (str): The module whose output is replaced, e.g. ``'neck'``
            or ``'decode_head.conv_seg'``.
        perturbation (dict): An Avatar perturbation or source config.
        tau (float, optional): The uncertainty temperature. Defaults to 4.
        seed (int): Defaults to 0.
    """

    def __init__(self,
                 model: nn.Module,
                 target: str,
                 perturbation: Dict[str, Any],
                 tau: Optional[float] = 4.0,
                 seed: int = 0) -> None:
        modules = dict(model.named_modules())
        if target not in modules:
            raise ValueError(f'target: the model has no module {target!r}')
        self.model, self.target, self.tau, self.seed = model, target, tau, seed
        self.perturbation = build_perturbation(
            copy.deepcopy(perturbation), KEY)
        self.manager = RecorderManager(
            dict(
                t=dict(type='ModuleOutputs', source=target,
                       _scope_='mmrazor')))
        self.manager.initialize(model)
        self.mode = shortest_forward(model, self.manager)
        if self.mode == 'loss':
            raise ValueError(
                f'target {target!r}: no forward short of the training loss '
                'reaches it (use a module of the backbone, neck or heads)')
        if self.perturbation.runs_teacher:
            self.perturbation.attach([model], KEY)
        self.batches = 0
        self._busy = False
        self._mixture: Any = None
        self.handles = [
            model.register_forward_pre_hook(self._before, with_kwargs=True),
            modules[target].register_forward_hook(self._replace)
        ]

    def remove(self) -> None:
        """Take the hooks (and a source's hooks) off the model."""
        for handle in self.handles:
            handle.remove()
        for handle in getattr(self.perturbation, '_handles', []):
            handle.remove()

    def _before(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        mode = kwargs.get('mode', args[2] if len(args) > 2 else 'tensor')
        if self._busy or mode != 'predict':
            return
        inputs = kwargs.get('inputs', args[0] if args else None)
        self._busy = True
        try:
            with torch.no_grad():
                self._mixture = self.mixture(inputs)
        finally:
            self._busy = False

    def _replace(self, module: nn.Module, args: Any, output: Any) -> Any:
        if self._busy or self._mixture is None:
            return None
        mixture, self._mixture = self._mixture, None
        shapes = [tuple(t.shape) for t in _levels(output)]
        if shapes != [tuple(t.shape) for t in _levels(mixture)]:
            raise RuntimeError(
                f'target {self.target!r}: the prediction computed shapes '
                f'{shapes}, the Avatars were drawn from a whole-image '
                'forward; only whole-image inference is supported')
        return mixture

    def _record(self, inputs: Tensor) -> None:
        with self.manager:
            run_forward(self.model, self.mode, inputs, None)

    def mixture(self, inputs: Tensor) -> Any:
        """The weighted mixture of the Avatars of ``target`` on ``inputs``,
        shaped as its output."""
        generator = seeded_generator(f'capacity/{self.seed}/{self.batches}',
                                     inputs.device)
        self.batches += 1
        where = f'target {self.target!r}'
        if self.perturbation.runs_teacher:
            buffers = record_teacher_avatars(self.perturbation, self._record,
                                             inputs, self.manager,
                                             generator)['t']
        else:
            self._record(inputs)
        record = self.manager.recorders['t'].data_buffer
        if len(record) != 1:
            raise RuntimeError(f'{where} ran {len(record)} times in one '
                               'forward; give a module that runs once')
        teacher = record[0]
        mixed = []
        for i, level in enumerate(_levels(teacher)):
            if self.perturbation.runs_teacher:
                (draw, ), (reference, ) = teacher_avatar_draws(
                    buffers, 0, None if isinstance(teacher, Tensor) else i,
                    where)
            else:
                draw = self.perturbation.draw(level, generator=generator)
                reference = level
            weights = _weights(reference, draw, self.tau)
            stack = draw.materialize()
            mixed.append(
                (weights.view(-1, *[1] * level.dim()).to(stack.dtype) *
                 stack).sum(0))
        return mixed[0] if isinstance(teacher, Tensor) else type(teacher)(
            mixed)


def _levels(value: Any) -> List[Tensor]:
    return [value] if isinstance(value, Tensor) else list(value)


def _weights(reference: Tensor, draw: Any, tau: Optional[float]) -> Tensor:
    if tau is None or len(draw) == 1:
        return torch.full((len(draw), ),
                          1.0 / len(draw),
                          device=reference.device)
    return avatar_weights(avatar_uncertainty(reference, draw), tau)


def _forwards(perturbation: Optional[Dict[str, Any]]) -> int:
    """Teacher forwards (of the batch) per step that a row costs."""
    if perturbation is None:
        return 1
    module = build_perturbation(copy.deepcopy(perturbation), KEY)
    return module.num_avatars if module.runs_teacher else 1


def capacity_table(config: str,
                   checkpoint: str,
                   target: str,
                   metric: str,
                   rows: Sequence[Dict[str, Any]] = CAPACITY_ROWS,
                   tau: Optional[float] = 4.0,
                   seed: int = 0,
                   work_dir: str = 'work_dirs/avatar_capacity',
                   cfg_options: Optional[Dict[str, Any]] = None,
                   echo: Callable[[str], None] = print) -> Dict[str, Any]:
    """Evaluate ``checkpoint`` with each row's Avatar mixture in place of
    ``target``'s output, on the config's test set.

    Returns:
        dict: ``rows`` (name, label, perturbation, the metric, teacher
        forwards per step, seconds) and what produced them.
    """
    from mmengine.runner import Runner
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg.work_dir = work_dir
    cfg.load_from = checkpoint
    cfg.log_level = 'WARNING'
    runner = Runner.from_cfg(cfg)
    results = []
    for row in rows:
        start = time.perf_counter()
        mixture = None if row['perturbation'] is None else AvatarMixture(
            runner.model, target, row['perturbation'], tau, seed)
        try:
            metrics = runner.test()
        finally:
            if mixture is not None:
                mixture.remove()
        if metric not in metrics:
            raise KeyError(f'metric {metric!r} not among {sorted(metrics)}')
        result = dict(
            name=row['name'],
            label=row['label'],
            perturbation=row['perturbation'],
            metric=float(metrics[metric]),
            teacher_forwards=_forwards(row['perturbation']),
            seconds=round(time.perf_counter() - start, 1))
        results.append(result)
        echo(f'[capacity] {row["name"]}: {metric} {result["metric"]:.4f} '
             f'({result["seconds"]:.0f} s)')
    return dict(
        config=portable_path(config),
        checkpoint=portable_path(checkpoint),
        target=target,
        metric=metric,
        tau=tau,
        seed=seed,
        machine=machine_description(),
        rows=results)


def capacity_markdown(report: Dict[str, Any],
                      scale: float = 100.0,
                      title: str = '',
                      note: str = '') -> str:
    """The report as a Markdown table (metric in points with ``scale``),
    each row with its difference from the teacher's."""
    vanilla = next(
        (r['metric'] for r in report['rows'] if r['perturbation'] is None),
        None)
    lines = [f'# {title or "Working capacity of Avatars"}', '']
    if note:
        lines += [note, '']
    lines += [
        f'Teacher `{report["checkpoint"]}` (config `{report["config"]}`); '
        f'`{report["target"]}` replaced by the uncertainty-weighted mixture '
        f'of its Avatars (tau = {report["tau"]}, seed {report["seed"]}). '
        f'Machine: {report["machine"]}.', '',
        f'| Avatars | K | teacher forwards per step | {report["metric"]} | '
        'minus the teacher |', '|---|---|---|---|---|'
    ]
    for row in report['rows']:
        k = '-' if row['perturbation'] is None else _num_avatars(
            row['perturbation'])
        diff = '' if vanilla is None or row['perturbation'] is None else \
            f'{(row["metric"] - vanilla) * scale:+.2f}'
        lines.append(f'| {row["label"]} | {k} | {row["teacher_forwards"]} | '
                     f'{row["metric"] * scale:.2f} | {diff} |')
    return '\n'.join(lines) + '\n'


def _num_avatars(perturbation: Dict[str, Any]) -> int:
    return build_perturbation(copy.deepcopy(perturbation), KEY).num_avatars


def write_report(report: Dict[str, Any], out_dir: str, **kwargs: Any) -> None:
    """``capacity.json`` and ``capacity.md`` in ``out_dir``."""
    with open(osp.join(out_dir, 'capacity.json'), 'w') as f:
        json.dump(report, f, indent=2)
    with open(osp.join(out_dir, 'capacity.md'), 'w') as f:
        f.write(capacity_markdown(report, **kwargs))
