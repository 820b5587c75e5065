# Copyright (c) mmakd contributors. All rights reserved.
"""Checks of AKD's teacher inputs: finite values, and a defined
uncertainty (``u`` needs teacher variance), without per-loss host
synchronisations."""
import logging
from typing import Any, Dict, List, Set, Tuple

import torch
from mmengine.logging import print_log
from torch import Tensor

__all__ = ['TeacherChecks', 'per_channel']

KEY = 'model.distiller.avatars'


def per_channel(t: Tensor) -> int:
    """How many values per channel ``(N, C, *spatial)`` holds: the
    samples behind its channel statistics."""
    return t.numel() // t.shape[1] if t.dim() >= 2 and t.shape[1] else 0


class TeacherChecks:
    """The teacher-input checks of :class:`~mmakd.models.AvatarDistiller`
    (AKD, Zhang et al., ACM MM 2023, https://arxiv.org/abs/2305.02722).

    Args:
        loss_forward_mappings (dict): The distiller's mappings (for the
            recorder names in messages).
        log_names (dict): Each AKD loss's name in the log.
        num_avatars (int): ``K``.
    """

    def __init__(self, loss_forward_mappings: Dict[str, Dict],
                 log_names: Dict[str, str], num_avatars: int) -> None:
        self.loss_forward_mappings = loss_forward_mappings
        self.log_names = log_names
        self.num_avatars = num_avatars
        #: (loss, teacher key, levels, 0-dim bool flag) of the last call.
        self.finite: List[Tuple[str, str, List[Tensor], Tensor]] = []
        #: Losses already warned about an undefined ``u``, and the flags
        #: still to read (see :meth:`watch_undefined`).
        self.warned: Set[str] = set()
        self.undefined_reads: List[Tuple[str, str, List[Tuple[int, ...]],
                                         Tensor, Any]] = []

    def add_finite(self, loss_name: str, teacher_key: str,
                   levels: List[Tensor],
                   per_level: List[Tuple[Tensor, Tensor]]) -> None:
        """Record whether a teacher input's uncertainties are finite (a
        level without teacher variance has no ``u``: not a divergence)."""
        finite = torch.stack([
            torch.isfinite(u).all() | ~defined for u, defined in per_level
        ]).all()
        self.finite.append((loss_name, teacher_key, levels, finite))

    def watch_undefined(self, loss_name: str, teacher_key: str,
                        levels: List[Tensor], defined: List[Tensor]) -> None:
        """Warn once per loss when ``u`` is undefined at some level.

        A level with one value per channel (``N * prod(spatial) == 1``) is
        known from its shape and warned about at once. Constant channels
        are only known from the values: their flags are read without a
        host synchronisation (on the CPU at once, on an accelerator from a
        non-blocking copy once an event says it arrived, usually at the
        next call), so this costs nothing per iteration.
        """
        if loss_name in self.warned or any(entry[0] == loss_name
                                           for entry in self.undefined_reads):
            return
        single = [i for i, t in enumerate(levels) if per_channel(t) == 1]
        shapes = [tuple(t.shape) for t in levels]
        if single:
            self._warn(loss_name, teacher_key, shapes, single, 'single')
            return
        flags = ~torch.stack(defined)
        event = None
        if flags.device.type != 'cpu':
            if not hasattr(torch, 'Event'):  # torch < 2.4: no warning
                return
            flags = flags.to('cpu', non_blocking=True)
            event = torch.Event(device=levels[0].device)
            event.record()
        self.undefined_reads.append(
            (loss_name, teacher_key, shapes, flags, event))

    def read_undefined(self) -> None:
        """Read the flags of :meth:`watch_undefined` that have arrived."""
        pending = []
        for loss_name, teacher_key, shapes, flags, event in \
                self.undefined_reads:
            if event is not None and not event.query():
                pending.append((loss_name, teacher_key, shapes, flags, event))
                continue
            # numpy() reads host memory: no synchronisation
            undefined = [i for i, u in enumerate(flags.numpy()) if u]
            if undefined and loss_name not in self.warned:
                self._warn(loss_name, teacher_key, shapes, undefined,
                           'constant')
        self.undefined_reads = pending

    def _warn(self, loss_name: str, teacher_key: str, shapes: List[Tuple[int,
                                                                         ...]],
              undefined: List[int], why: str) -> None:
        self.warned.add(loss_name)
        recorder = self.loss_forward_mappings[loss_name][teacher_key].get(
            'recorder')
        where = f'model.distiller.loss_forward_mappings.{loss_name}.' \
            f'{teacher_key} (recorder {recorder!r})'
        batch = shapes[undefined[0]][0]
        levels = '' if len(shapes) == 1 else \
            f' at level(s) {undefined} of {len(shapes)}'
        if why == 'single':
            reason = (f'holds a single value per channel{levels} (batch '
                      f'size {batch}, shape {shapes[undefined[0]]}): its '
                      'channels have no variance')
        else:
            reason = (f'is constant in every channel{levels} over the '
                      f'batch (batch size {batch}, shape '
                      f'{shapes[undefined[0]]}) and positions: it has no '
                      'variance')
        k = self.num_avatars
        if len(undefined) < len(shapes):
            effect = ('those levels are left out of the geometric mean of u '
                      'over the levels')
        else:
            name = self.log_names[loss_name]
            effect = (f'the {k} Avatars get equal weights 1/{k} on such '
                      f'batches and akd.{name}.u is logged as nan')
        print_log(
            f'{KEY}.uncertainty: {where} {reason}, so the Avatars\' '
            f'uncertainty u (their drift relative to the teacher\'s '
            f'variance) is undefined: {effect}. A larger batch (or '
            'images that differ) restores the factor. Shown once per loss.',
            logger='current',
            level=logging.WARNING)

    def pending_flags(self) -> List[Tensor]:
        """The finiteness flags of the last call, one 0-dim bool tensor per
        AKD loss (see ``AvatarDistiller.pending_finite_flags``)."""
        return [flag for *_, flag in self.finite]

    def check_finite(self) -> None:
        """Raise ``FloatingPointError`` naming the mapping, recorder and
        levels if a teacher input of the last call holds NaN or Inf (one
        synchronisation for all losses; more only to name the culprit)."""
        flags = self.pending_flags()
        if not flags or bool(torch.stack(flags).all()):
            return
        for loss_name, teacher_key, levels, flag in self.finite:
            if bool(flag):
                continue
            bad = [
                i for i, t in enumerate(levels)
                if not bool(torch.isfinite(t).all())
            ]
            recorder = self.loss_forward_mappings[loss_name][teacher_key].get(
                'recorder')
            where = f'loss_forward_mappings.{loss_name}.{teacher_key} ' \
                f'(recorder {recorder!r})'
            if not bad:  # finite values whose float32 statistics overflow
                raise FloatingPointError(
                    f'{where}: the channel statistics of its Avatars '
                    'overflow float32 (values near 1e19 or more); the '
                    'teacher diverged. (avatars.check_finite=False skips '
                    'this check.)')
            raise FloatingPointError(
                f'{where} holds NaN or Inf at level(s) {bad}: the '
                'teacher diverged or its checkpoint is broken. '
                '(avatars.check_finite=False skips this check.)')
