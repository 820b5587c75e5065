# Copyright (c) mmakd contributors. All rights reserved.
"""One-command distillation: from a student config, a teacher config and
a teacher checkpoint to a written, checked MMRazor config."""
import copy
import os
import os.path as osp
import time
from dataclasses import dataclass
from typing import Any, Dict, Optional

from mmengine.registry import DefaultScope

from mmakd.engine.hooks.atomic_checkpoint_hook import write_text_atomically
from mmakd.models.utils.validation import check_checkpoint_exists
from .plan import PairPlan, plan_pair
from .writer import (format_table, pair_config_dict, pair_config_text,
                     split_options)

__all__ = ['PairConfig', 'make_pair_config']

#: Keys of the generated ``model`` that are not algorithm arguments, or
#: that the check build gives differently (built models, no checkpoint).
_NOT_ARGUMENTS = ('_delete_', '_scope_', 'type', 'architecture', 'teacher',
                  'teacher_ckpt', 'distiller')


@dataclass
class PairConfig:
    """A generated one-command distillation config.

    Attributes:
        plan (PairPlan): What it pairs.
        path (str): Where it was written.
        work_dir (str): The work directory it was written into.
        table (str): The table :func:`format_table` printed.
        replaced (str, optional): Where a different config of the same name
            was moved, if there was one.
    """
    plan: PairPlan
    path: str
    work_dir: str
    table: str
    replaced: Optional[str] = None


def _check_build(cfg: Dict[str, Any], student, teacher) -> None:
    """Build the generated algorithm around the already built models (no
    checkpoint read): recorders, connectors, losses, preprocessing and
    record shapes are checked before anything is written."""
    from mmakd.models.algorithms import FlexibleTeacherDistill
    model = cfg['model']
    kwargs = {k: v for k, v in model.items() if k not in _NOT_ARGUMENTS}
    with DefaultScope.overwrite_default_scope('mmrazor'):
        FlexibleTeacherDistill(
            architecture=student,
            teacher=teacher,
            distiller=copy.deepcopy(model['distiller']),
            teacher_ckpt=None,
            **kwargs)


def _write(path: str, text: str) -> Optional[str]:
    """Write ``text`` to ``path``; a different file already there is
    moved aside (returned), never overwritten."""
    os.makedirs(osp.dirname(path) or '.', exist_ok=True)
    moved = None
    if osp.exists(path):
        with open(path, encoding='utf-8') as f:
            if f.read() == text:
                return None
        stamp = time.strftime('%Y%m%d_%H%M%S',
                              time.localtime(osp.getmtime(path)))
        moved = f'{path[:-3]}.{stamp}.py'
        try:
            os.replace(path, moved)
        except FileNotFoundError:  # another process of the launch moved it
            moved = None
    # every process of a distributed launch writes the same text
    write_text_atomically(path, text)
    return moved


def make_pair_config(
        student: str,
        teacher: str,
        teacher_ckpt: str,
        work_dir: Optional[str] = None,
        distill: Optional[str] = None,
        num_avatars: Optional[int] = None,
        aux_head: bool = False,
        cfg_options: Optional[Dict[str, Any]] = None) -> PairConfig:
    """Generate, check and write the config that distils ``student`` from
    ``teacher`` (``tools/train.py STUDENT --teacher T --teacher-ckpt C``).

    Nothing is downloaded and no checkpoint is read: a local teacher
    checkpoint must exist, and is read (strictly) when training builds the
    model.

    Args:
        student (str): The student's plain model config.
        teacher (str): The teacher's plain model config.
        teacher_ckpt (str): The teacher's checkpoint, a path or URL.
        work_dir (str, optional): Where the config is written. Defaults to
            ``./work_dirs/<config name>``.
        distill (str, optional): See :func:`plan_pair`.
        num_avatars (int, optional): See :func:`plan_pair`.
        aux_head (bool): See :func:`plan_pair`.
        cfg_options (dict, optional): ``--cfg-options``: ``model.*`` keys of
            the algorithm (``model.distiller...``, ``model.teacher_eval``)
            go to it, other ``model.*`` keys to the student's model, the
            rest to the config; all are written into the file.

    Returns:
        PairConfig: The written config and its table.

    Raises:
        PairingError: What cannot be paired, naming the option or key.
        FileNotFoundError: A local ``teacher_ckpt`` that does not exist.
    """
    check_checkpoint_exists(teacher_ckpt, '--teacher-ckpt')
    student_opts, algorithm_opts, rest = split_options(cfg_options)
    plan, s_model, t_model = plan_pair(student, teacher, teacher_ckpt, distill,
                                       num_avatars, aux_head, student_opts)
    cfg = pair_config_dict(plan, algorithm_opts, rest)
    _check_build(cfg, s_model, t_model)
    del s_model, t_model
    work_dir = work_dir or osp.join('work_dirs', plan.name[:-3])
    path = osp.join(work_dir, plan.name)
    replaced = _write(path, pair_config_text(plan, cfg))
    return PairConfig(plan, path, work_dir, format_table(plan, path), replaced)
