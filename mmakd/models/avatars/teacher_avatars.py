# Copyright (c) mmakd contributors. All rights reserved.
"""Recording the Avatars of a :class:`BaseTeacherAvatars` source: the
teacher runs on each group's batch, its records are split per Avatar and
mapped back onto the original frame (AKD, Zhang et al., ACM MM 2023,
https://arxiv.org/abs/2305.02722)."""
import logging
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from mmengine.logging import print_log
from torch import Tensor

from .avatar_draw import AvatarDraw
from .base_teacher_avatars import BaseTeacherAvatars

__all__ = [
    'record_teacher_avatars', 'teacher_avatar_draws', 'TeacherAvatarRecords'
]

#: Per teacher recorder, the ``K`` Avatars' data buffers (each a list of
#: records, as the recorder holds them).
TeacherAvatarRecords = Dict[str, List[List[Any]]]


def _map(fn: Callable[..., Any], *values: Any) -> Any:
    """``fn`` over the tensors of parallel records (tensors, or tuples,
    lists and dicts of them); other leaves are kept from the first."""
    first = values[0]
    if isinstance(first, Tensor):
        return fn(*values)
    if isinstance(first, (tuple, list)):
        items = [_map(fn, *parts) for parts in zip(*values)]
        return type(first)(items) if isinstance(first, list) else tuple(items)
    if isinstance(first, dict):
        return {k: _map(fn, *(v[k] for v in values)) for k in first}
    return first


def _split(record: Any, j: int, copies: int, batch: int, where: str) -> Any:
    """Copy ``j`` of ``copies`` batches of ``batch`` images in ``record``."""
    if copies == 1:
        return record

    def part(t: Tensor) -> Tensor:
        if t.dim() == 0 or t.shape[0] != copies * batch:
            raise ValueError(
                f'{where}: a tensor of shape {tuple(t.shape)} from a teacher '
                f'forward on {copies} x {batch} images; Avatars that run the '
                'teacher need records with the batch first (or '
                'samples_per_forward=1 batch per forward).')
        return t[j * batch:(j + 1) * batch]

    return _map(part, record)


def _mean(records: List[Any]) -> Any:

    def mean(*tensors: Tensor) -> Tensor:
        total = tensors[0].clone()
        for t in tensors[1:]:
            total.add_(t)
        return total.div_(len(tensors))

    return _map(mean, *records)


def record_teacher_avatars(
        source: BaseTeacherAvatars, record: Callable[[Tensor], None],
        inputs: Tensor, manager: Any,
        generator: Optional[torch.Generator]) -> TeacherAvatarRecords:
    """Draw the ``K`` Avatars of ``source`` by running the teacher.

    Args:
        source (BaseTeacherAvatars): Views, in-network dropout...
        record (callable): Runs the teacher(s) on a batch into the
            recorders of ``manager`` (as far as they need, no gradient).
        inputs (Tensor): The preprocessed batch ``(N, C, H, W)``.
        manager (RecorderManager): The teacher recorders.
        generator (torch.Generator, optional): The seeded generator.

    Returns:
        dict: Per recorder, ``K`` data buffers, each mapped onto the
        original frame. Each recorder is left holding the teacher's records:
        those of ``source.reference_index``, or the Avatars' mean.

    Note:
        The Avatars run in as few teacher forwards as memory allows: when
        one runs out of memory (``torch.OutOfMemoryError``), the images per
        forward are halved (``source.samples_per_forward``, kept for the
        next iterations, with a warning) and the draw is repeated from the
        same generator state, so the Avatars are the same.
    """
    state = None if generator is None else generator.get_state()
    while True:
        try:
            return _record_avatars(source, record, inputs, manager, generator)
        except torch.OutOfMemoryError:
            batch = len(inputs)
            images = source.samples_per_forward or \
                source.num_avatars * batch
            if images // 2 < batch:  # already one Avatar per forward
                raise
            source.samples_per_forward = images // 2
            print_log(
                f'{type(source).__name__}: out of memory in a teacher '
                f'forward of up to {images} images; samples_per_forward='
                f'{images // 2} from now on.',
                logger='current',
                level=logging.WARNING)
            if inputs.is_cuda:
                torch.cuda.empty_cache()
            if state is not None:
                generator.set_state(state)


def _record_avatars(
        source: BaseTeacherAvatars, record: Callable[[Tensor], None],
        inputs: Tensor, manager: Any,
        generator: Optional[torch.Generator]) -> TeacherAvatarRecords:
    batch, num = len(inputs), source.num_avatars
    raw: Dict[str, List[Any]] = {
        name: [None] * num
        for name in manager.recorders
    }
    for group in source.groups(inputs, generator):
        with source.active(generator):
            record(group.inputs)
        copies = len(group.avatars)
        for name, recorder in manager.recorders.items():
            where = f'teacher recorder {name!r}'
            for j, k in enumerate(group.avatars):
                raw[name][k] = [
                    _split(r, j, copies, batch, f'{where} record {i}')
                    for i, r in enumerate(recorder.data_buffer)
                ]
    ref = source.reference_index
    out: TeacherAvatarRecords = {}
    for name, recorder in manager.recorders.items():
        where = f'teacher recorder {name!r}'
        base = raw[name][0 if ref is None else ref]
        buffers = []
        for k, buffer in enumerate(raw[name]):
            if len(buffer) != len(base):
                raise ValueError(f'{where}: Avatar {k} recorded '
                                 f'{len(buffer)} records, Avatar 0 '
                                 f'{len(base)}.')
            buffers.append([
                _map(
                    lambda t, r, k=k, i=i: source.map_back(
                        t, k, r, f'{where} record {i}'),
                    rec,
                    base[i]) for i, rec in enumerate(buffer)
            ])
        recorder.data_buffer[:] = buffers[ref] if ref is not None else [
            _mean([b[i] for b in buffers]) for i in range(len(base))
        ]
        out[name] = buffers
    return out


def teacher_avatar_draws(buffers: List[List[Any]], record_idx: int,
                         data_idx: Optional[int],
                         where: str) -> Tuple[List[AvatarDraw], List[Tensor]]:
    """The Avatars of one teacher record (as ``get_record`` reads it, by
    ``record_idx`` and ``data_idx``) from the recorder's ``K`` buffers: a
    stack per level, and each level's reference for the uncertainty, the
    Avatars' mean (no Avatar is privileged, the original view included)."""
    values = []
    for k, buffer in enumerate(buffers):
        if record_idx >= len(buffer):
            raise IndexError(f'{where}: record_idx={record_idx} but Avatar '
                             f'{k} recorded {len(buffer)} records')
        value = buffer[record_idx]
        values.append(value if data_idx is None else value[data_idx])
    per_avatar = [[v] if isinstance(v, Tensor) else list(v) for v in values]
    draws, references = [], []
    for level in zip(*per_avatar):
        stack = torch.stack([t.detach() for t in level])
        reference = stack.mean(0)
        draws.append(AvatarDraw(reference, stack=stack))
        references.append(reference)
    return draws, references
