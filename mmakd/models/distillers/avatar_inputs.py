# Copyright (c) mmakd contributors. All rights reserved.
"""The inputs of one AKD loss: student tensors and Avatars in float32,
standardised where ``model.distiller.avatars.normalize(_at)`` say."""
from typing import Any, Dict, List, Optional, Tuple

import torch
from mmengine.logging import print_log
from torch import Tensor

from ..avatars import standardize
from .avatar_records import (KEY, Record, describe, is_tensors, map_record,
                             pairs, to_fp32)

__all__ = ['AvatarInputsMixin']


class AvatarInputsMixin:
    """Input preparation of :class:`~mmakd.models.AvatarDistiller` (AKD,
    Zhang et al., ACM MM 2023, https://arxiv.org/abs/2305.02722): a mixin
    of a ``ConfigurableDistiller`` (it uses ``get_record``, ``connectors``
    and ``distill_losses``) with ``normalize``, ``normalize_at`` and
    ``resolved_normalize_at`` set."""

    def _student_inputs(
            self,
            loss_name: str,
            mapping: Dict[str, Dict],
            teacher_key: str,
            at: str,
            values: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """The loss's other inputs; student tensors in float32, standardised
        after (``at='loss'``) or before (``'record'``) their connector when
        ``normalize`` says so. ``values`` are the inputs after their
        connectors, if already computed."""
        std_student = self.normalize in ('both', 'student')
        kwargs = {}
        for key, record in mapping.items():
            if key == teacher_key:
                continue
            student = bool(record.get('from_student'))
            if student and std_student and at == 'record':
                record = dict(record)
                connector = record.pop('connector', None)
                connector_idx = record.pop('connector_idx', None)
                value = self.get_record(**record)
                if is_tensors(value):
                    value = self._standardize(value, loss_name, key)
                value = self._connect(value, connector, connector_idx)
                if is_tensors(value):
                    value = map_record(value, to_fp32)
            else:
                value = values[key] if values and key in values else \
                    self.get_record(**record)
                if student and is_tensors(value):
                    value = map_record(value, to_fp32)
                    if std_student:
                        value = self._standardize(value, loss_name, key)
                elif student and std_student:
                    raise TypeError(
                        f'model.distiller.loss_forward_mappings.{loss_name}.'
                        f'{key} is {describe(value)}, which cannot be '
                        f'standardised ({KEY}.normalize={self.normalize!r}'
                        f"); set {KEY}.normalize_at='record' or "
                        'normalize=False.')
            kwargs[key] = value
        return kwargs

    def _connect(self, value: Any, connector: Optional[str],
                 connector_idx: Optional[int]) -> Any:
        """What ``get_record`` does after reading a record: the mapping's
        connector, then ``connector_idx``."""
        if connector:
            value = self.connectors[connector](value)
        if connector_idx is not None:
            value = value[connector_idx]
        return value

    def _standardize(
            self,
            value: Record,
            loss_name: str,
            key: str,
            moments: Optional[List[Tuple[Tensor, Tensor]]] = None) -> Record:
        """Standardise a record per channel (with its levels' ``(mean,
        var)`` when known)."""
        try:
            if moments is None:
                return map_record(value, standardize)
            if isinstance(value, Tensor):
                return standardize(value, moments=moments[0])
            return type(value)(standardize(v, moments=m)
                               for v, m in zip(value, moments))
        except ValueError as err:
            raise ValueError(
                f'{KEY}.normalize={self.normalize!r}: cannot standardise '
                f'model.distiller.loss_forward_mappings.{loss_name}.{key}: '
                f'{err}') from err

    def _avatar_input(
            self,
            avatar: Record,
            connector: Optional[str],
            connector_idx: Optional[int],
            at: str,
            loss_name: str,
            teacher_key: str,
            moments: Optional[List[Tuple[Tensor, Tensor]]] = None) -> Any:
        """One Avatar as the loss sees it: through the teacher connector,
        in float32, standardised where ``normalize`` says; ``moments``, its
        levels' per-channel ``(mean, var)``, are used only when no
        connector changes the Avatar."""
        std_teacher = self.normalize in ('both', 'teacher')
        if connector or connector_idx is not None:
            moments = None
        if std_teacher and at == 'record':
            avatar = self._standardize(avatar, loss_name, teacher_key, moments)
        avatar = self._connect(avatar, connector, connector_idx)
        if is_tensors(avatar):
            avatar = map_record(avatar, to_fp32)
            if std_teacher and at == 'loss':
                avatar = self._standardize(avatar, loss_name, teacher_key,
                                           moments)
        return avatar

    def _resolve_normalize_at(
            self, loss_name: str, mapping: Dict[str, Dict], teacher_key: str,
            first_avatar: Record, connector: Optional[str],
            connector_idx: Optional[int]
    ) -> Tuple[str, Optional[Dict[str, Any]]]:
        """Where this loss is standardised, and the student inputs after
        their connectors when computing them was needed to decide.

        ``'auto'`` is decided on the first call (and logged when it picks
        ``'record'``): ``'loss'`` if every student input pairs with the
        first Avatar after its connector as a feature map (two tensors, or
        tuples of tensors of one length), else ``'record'``. An explicit
        ``'loss'`` needs that pairing too.
        """
        resolved = self.resolved_normalize_at.get(loss_name)
        if resolved is not None:
            return resolved, None
        if self.normalize == 'none' or self.normalize_at == 'record':
            at = 'loss' if self.normalize == 'none' else self.normalize_at
            self.resolved_normalize_at[loss_name] = at
            return at, None
        values = {
            k: self.get_record(**r)
            for k, r in mapping.items() if r.get('from_student')
        }
        with torch.no_grad():
            avatar = self._connect(first_avatar, connector, connector_idx)
        paired = all(pairs(v, avatar) for v in values.values())
        if self.normalize_at == 'loss' and not paired:
            loss_type = type(self.distill_losses[loss_name]).__name__
            raise TypeError(
                f'model.distiller.loss_forward_mappings.{loss_name}: '
                f'{loss_type} compares '
                f'{", ".join(describe(v) for v in values.values())} with '
                f'{describe(avatar)}, not two feature maps, so '
                f"{KEY}.normalize_at='loss' cannot standardise them alike; "
                f"set {KEY}.normalize_at='record' (or 'auto') to "
                'standardise the features before the connectors, or '
                'normalize=False.')
        at = 'loss' if paired else 'record'
        if at == 'record':
            print_log(
                f'{KEY}.normalize_at=auto: {loss_name} compares '
                f'{", ".join(describe(v) for v in values.values())} with '
                f'{describe(avatar)} (connector outputs, not feature maps), '
                'so its recorded tensors are standardised before the '
                'connectors.',
                logger='current')
        self.resolved_normalize_at[loss_name] = at
        return at, values if at == 'loss' else None
