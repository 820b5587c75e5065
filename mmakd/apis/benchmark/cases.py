# Copyright (c) mmakd contributors. All rights reserved.
"""The benchmark's cases: every algorithm built from one distillation config.

Every case starts from the same random weights. The optimizer step runs in
full but at learning rate 0, so the weights stay as built: each round times
the same computation, and a case cannot diverge on random weights.
"""
import copy
from functools import partial
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from mmengine.config import Config
from mmengine.optim import OptimWrapper, build_optim_wrapper
from mmengine.registry import DefaultScope, init_default_scope
from torch import nn

from mmakd.models.utils.teacher_forward import (FEAT_PARTS, _within,
                                                run_forward, shortest_forward)
from mmakd.registry import MODELS
from mmakd.testing import random_weights_overrides

CASES = ('student', 'base', 'ours', 'ours_fused', 'akd_k1', 'akd_k4', 'akd_k8',
         'akd_k4_loop', 'akd_k8_loop', 'akd_flip', 'akd_scales_flip',
         'akd_mc4', 'multi_teacher_k2', 'multi_teacher_k4')
#: Avatars that run the teacher, per case.
TEACHER_SOURCES = dict(
    akd_flip=dict(type='TeacherViews', flip=True),
    akd_scales_flip=dict(
        type='TeacherViews', flip=True, scales=(0.75, 1.0, 1.25)),
    akd_mc4=dict(type='TeacherDropout', p=0.1, num_avatars=4))

#: ``{name: (model, optim_wrapper)}``, as :func:`build_cases` returns them.
Cases = Dict[str, Tuple[nn.Module, OptimWrapper]]


def _task(cfg: Config) -> str:
    """``'seg'`` for an MMSegmentation config, else ``'det'``."""
    scope = cfg.get('default_scope', '')
    return 'seg' if scope == 'mmseg' else 'det'


def _plain_distiller(distiller: Dict[str, Any]) -> Dict[str, Any]:
    """A copy of ``distiller`` as a ``ConfigurableDistiller`` (no
    Avatars)."""
    distiller = copy.deepcopy(distiller)
    distiller.pop('avatars', None)
    distiller['type'] = 'ConfigurableDistiller'
    return distiller


def build_cases(
        cfg: Config, device: str, size: Tuple[int, int],
        names: List[str]) -> Tuple[Cases, nn.Module, str, str, nn.Module]:
    """Every case's model and optimizer wrapper, same weights.

    Args:
        cfg (Config): The distillation config (modified in place: random
            weights, no checkpoints).
        device (str): Where the models go.
        size (tuple[int, int]): The input ``(H, W)``; the student's data
            preprocessor is set to it (no padding to a crop).
        names (list[str]): The cases to build, from :data:`CASES`.

    Returns:
        tuple: ``{name: (model, optim_wrapper)}`` in ``names`` order, a copy
        of the teacher on ``device`` (for the lower bound), the teacher's
        shortest forward mode that feeds the recorders, the class name of
        the ``base`` case and the student model (on the CPU).
    """
    from mmrazor.models import FpnTeacherDistill, SingleTeacherDistill
    cfg.merge_from_dict(random_weights_overrides(cfg))
    init_default_scope(cfg.get('default_scope', 'mmrazor'))
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg['distiller'] = _plain_distiller(model_cfg['distiller'])
    torch.manual_seed(0)
    reference = MODELS.build(copy.deepcopy(model_cfg))
    student, teacher = reference.student, reference.teacher
    sources = [
        r.source
        for r in reference.distiller.teacher_recorders.recorders.values()
        if hasattr(r, 'source')
    ]
    fpn_only = bool(sources) and all(_within(s, FEAT_PARTS) for s in sources)
    base_cls = FpnTeacherDistill if fpn_only else SingleTeacherDistill
    distiller_cfg = model_cfg['distiller']
    if hasattr(student.data_preprocessor, 'size') and \
            student.data_preprocessor.size is not None:
        student.data_preprocessor.size = tuple(size)  # no padding to crop

    def algorithm(kind: str,
                  k: int = 0,
                  fuse: bool = False,
                  loop: bool = False,
                  source: Optional[Dict[str, Any]] = None):
        s, t = copy.deepcopy(student), copy.deepcopy(teacher)
        dist = copy.deepcopy(distiller_cfg)
        with DefaultScope.overwrite_default_scope('mmrazor'):
            if kind == 'base':
                return base_cls(architecture=s, teacher=t, distiller=dist)
            if kind == 'multi':
                return MODELS.build(
                    dict(
                        type='MultiTeacherDistill',
                        architecture=s,
                        teachers=[t] +
                        [copy.deepcopy(teacher) for _ in range(k - 1)],
                        distiller=dist,
                        check_shapes=False))
            if k:
                dist['type'] = 'AvatarDistiller'
                dist['avatars'] = dict(
                    num_avatars=k,
                    perturbation=dict(type='AvatarDropout', p=0.1),
                    fuse=False if loop else 'auto')
            if source:
                dist['type'] = 'AvatarDistiller'
                dist['avatars'] = dict(perturbation=copy.deepcopy(source))
            return MODELS.build(
                dict(
                    type='FlexibleTeacherDistill',
                    architecture=s,
                    teacher=t,
                    distiller=dist,
                    check_shapes=False,
                    fuse_teacher_conv_bn=fuse))

    builders: Dict[str, Callable] = dict(
        student=lambda: copy.deepcopy(student),
        base=lambda: algorithm('base'),
        ours=lambda: algorithm('ours'),
        ours_fused=lambda: algorithm('ours', fuse=True),
        akd_k1=lambda: algorithm('akd', 1),
        akd_k4=lambda: algorithm('akd', 4),
        akd_k8=lambda: algorithm('akd', 8),
        akd_k4_loop=lambda: algorithm('akd', 4, loop=True),
        akd_k8_loop=lambda: algorithm('akd', 8, loop=True),
        **{
            name: partial(algorithm, 'akd', source=source)
            for name, source in TEACHER_SOURCES.items()
        },
        multi_teacher_k2=lambda: algorithm('multi', 2),
        multi_teacher_k4=lambda: algorithm('multi', 4))
    cases = {}
    for name in names:
        model = builders[name]().to(device)
        model.train()
        optim = build_optim_wrapper(model, cfg.optim_wrapper)
        # The optimizer runs in full, at learning rate 0: every round times
        # the same computation, and no case can diverge on random weights.
        for group in optim.optimizer.param_groups:
            group['lr'] = 0.0
        cases[name] = (model, optim)
    teacher_mode = shortest_forward(teacher,
                                    reference.distiller.teacher_recorders)
    lower_teacher = copy.deepcopy(teacher).to(device)
    return cases, lower_teacher, teacher_mode, base_cls.__name__, student


def _teacher_forward(teacher: nn.Module, mode: str, data: dict) -> None:
    """The teacher's forward in ``mode`` (``'feat'``, ``'tensor'`` or
    ``'loss'``) on preprocessed ``data``, without gradients."""
    with torch.no_grad():
        run_forward(teacher, mode, data['inputs'], data['data_samples'])
