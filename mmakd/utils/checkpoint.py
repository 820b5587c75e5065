# Copyright (c) mmakd contributors. All rights reserved.
"""Turn a distillation checkpoint into a plain checkpoint of the student."""
from collections import OrderedDict
from typing import Any, Dict

import torch
from mmengine.runner.checkpoint import _load_checkpoint

__all__ = ['student_state_dict', 'convert_kd_checkpoint']


def student_state_dict(state_dict: Dict[str, torch.Tensor],
                       prefix: str = 'architecture.') -> 'OrderedDict':
    """The student's weights inside a distillation ``state_dict``.

    MMRazor's algorithms hold the student as ``architecture`` (the teacher
    as ``teacher``, losses and connectors as ``distiller``); only the
    student's keys are kept, without the prefix.

    Args:
        state_dict (dict): The algorithm's state dict.
        prefix (str): Prefix of the student's keys. Defaults to
            ``'architecture.'``.

    Returns:
        OrderedDict: The student's state dict.
    """
    student = OrderedDict((key[len(prefix):], value)
                          for key, value in state_dict.items()
                          if key.startswith(prefix))
    if not student:
        roots = sorted({k.split('.', 1)[0] for k in state_dict})
        raise KeyError(
            f'no key starts with {prefix!r}: this is not a distillation '
            f'checkpoint of an MMRazor/mmakd algorithm (top-level keys: '
            f'{roots}).')
    return student


def convert_kd_checkpoint(src: str,
                          dst: str,
                          prefix: str = 'architecture.') -> Dict[str, Any]:
    """Write the student of distillation checkpoint ``src`` to ``dst``.

    The output holds ``state_dict`` (the student's) and ``meta`` (the
    source's, e.g. ``dataset_meta``, plus where it came from); optimizer,
    scheduler and message-hub states are dropped.

    Args:
        src (str): Distillation checkpoint (path or URL).
        dst (str): Output path.
        prefix (str): Prefix of the student's keys.

    Returns:
        dict: ``num_tensors``, ``num_params`` and ``dropped`` (top-level
        prefixes left out, e.g. ``['distiller', 'teacher']``).
    """
    checkpoint = _load_checkpoint(src, map_location='cpu')
    if 'state_dict' not in checkpoint:
        raise KeyError(f'{src} has no state_dict')
    state = checkpoint['state_dict']
    student = student_state_dict(state, prefix)
    meta = dict(checkpoint.get('meta', {}))
    meta['converted_from'] = dict(checkpoint=str(src), prefix=prefix)
    torch.save(dict(meta=meta, state_dict=student), dst)
    dropped = sorted(
        {k.split('.', 1)[0]
         for k in state if not k.startswith(prefix)})
    return dict(
        num_tensors=len(student),
        num_params=int(sum(v.numel() for v in student.values())),
        dropped=dropped)
