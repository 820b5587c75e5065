# Copyright (c) mmakd contributors. All rights reserved.
"""Loss inputs under AKD: records that are a tensor or a tuple of tensors,
their description in errors, and the base loss's errors with the config
key."""
from typing import Any, Callable, Dict, List, Tuple, Union

import torch
from torch import Tensor

__all__ = [
    'Record', 'map_record', 'is_tensors', 'pairs', 'describe', 'log_name',
    'to_fp32', 'per_channel', 'loss_error'
]

KEY = 'model.distiller.avatars'
Record = Union[Tensor, Tuple[Tensor, ...], List[Tensor]]


def map_record(value: Record, fn: Callable[[Tensor], Tensor]) -> Record:
    """Apply ``fn`` to a tensor or to each tensor of a tuple/list."""
    if isinstance(value, Tensor):
        return fn(value)
    return type(value)(fn(v) for v in value)


def is_tensors(value: Any) -> bool:
    if isinstance(value, Tensor):
        return True
    return isinstance(value, (tuple, list)) and len(value) > 0 and all(
        isinstance(v, Tensor) for v in value)


def pairs(student: Any, avatar: Any) -> bool:
    """Whether two loss inputs can both be standardised as feature maps: two
    tensors, or two tuples of tensors of the same length."""
    if isinstance(student, Tensor) and isinstance(avatar, Tensor):
        return True
    return (isinstance(student,
                       (tuple, list)) and isinstance(avatar, (tuple, list))
            and len(student) == len(avatar) and is_tensors(student)
            and is_tensors(avatar))


def describe(value: Any) -> str:
    if isinstance(value, Tensor):
        return f'shape {tuple(value.shape)}'
    if isinstance(value, (tuple, list)):
        inner = ', '.join(
            str(tuple(v.shape)) if isinstance(v, Tensor) else type(v).__name__
            for v in value)
        return f'a {type(value).__name__} of {len(value)} ({inner})'
    return type(value).__name__


def log_name(loss_name: str) -> str:
    """A log key for ``loss_name`` without 'loss' in it (MMEngine sums
    every logged value whose key contains 'loss' into the total loss)."""
    return loss_name.replace('loss', '').strip('_.') or 'base'


def to_fp32(t: Tensor) -> Tensor:
    """At least float32: half precision up, float64 kept."""
    return t if t.dtype == torch.float64 else t.float()


def per_channel(t: Tensor) -> int:
    """How many values per channel ``(N, C, *spatial)`` holds: the
    samples behind its channel statistics."""
    return t.numel() // t.shape[1] if t.dim() >= 2 and t.shape[1] else 0


def loss_error(err: Exception, loss_name: str, loss_module: Any,
               kwargs: Dict[str,
                            Any], teacher_key: str, avatar: Any) -> Exception:
    """``err`` of the base loss, re-raised with the config key and what the
    loss was given."""
    if not isinstance(avatar, str):
        avatar = describe(avatar)
    inputs = ', '.join(f'{k}: {describe(v)}' for k, v in kwargs.items()
                       if is_tensors(v))
    message = (
        f'model.distiller.distill_losses.{loss_name} '
        f'({type(loss_module).__name__}) failed under AvatarDistiller on '
        f'{inputs}, {teacher_key} (an Avatar): {type(err).__name__}: {err}. '
        f'Check model.distiller.loss_forward_mappings.{loss_name} (add a '
        'connector that aligns the student) or leave the loss out of '
        f'{KEY}.losses.')
    try:
        return type(err)(message)
    except TypeError:  # an exception type with another signature
        return RuntimeError(message)
