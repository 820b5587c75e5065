# Copyright (c) mmakd contributors. All rights reserved.
"""AKD's distiller: K Avatars per loss, uncertainty weights, logging."""
import hashlib
import logging
from typing import Any, Callable, Dict, List, Optional, Set, Tuple, Union

import torch
from mmengine.dist import get_rank
from mmengine.logging import MessageHub, print_log
from mmrazor.models.distillers import ConfigurableDistiller
from torch import Tensor

from mmakd.registry import MODELS
from ..perturbations import BaseAvatarPerturbation, build_perturbation
from ..perturbations.functional import check_num_avatars
from ..utils.statistics import (DEFAULT_TAU, avatar_uncertainty,
                                avatar_weights, combine_uncertainty,
                                standardize)

__all__ = ['AvatarDistiller']

KEY = 'model.distiller.avatars'
_AVATAR_KEYS = {
    'num_avatars', 'perturbation', 'normalize', 'normalize_at', 'uncertainty',
    'losses', 'check_finite'
}
_NORMALIZE_AT = ('auto', 'loss', 'record')
_NORMALIZE = {
    True: 'both',
    False: 'none',
    None: 'none',
    'both': 'both',
    'student': 'student',
    'teacher': 'teacher',
    'none': 'none'
}
Record = Union[Tensor, Tuple[Tensor, ...], List[Tensor]]


def _map(value: Record, fn: Callable[[Tensor], Tensor]) -> Record:
    """Apply ``fn`` to a tensor or to each tensor of a tuple/list."""
    if isinstance(value, Tensor):
        return fn(value)
    return type(value)(fn(v) for v in value)


def _is_tensors(value: Any) -> bool:
    if isinstance(value, Tensor):
        return True
    return isinstance(value, (tuple, list)) and len(value) > 0 and all(
        isinstance(v, Tensor) for v in value)


def _pairs(student: Any, avatar: Any) -> bool:
    """Whether two loss inputs can both be standardised as feature maps: two
    tensors, or two tuples of tensors of the same length."""
    if isinstance(student, Tensor) and isinstance(avatar, Tensor):
        return True
    return (isinstance(student,
                       (tuple, list)) and isinstance(avatar, (tuple, list))
            and len(student) == len(avatar) and _is_tensors(student)
            and _is_tensors(avatar))


def _describe(value: Any) -> str:
    if isinstance(value, Tensor):
        return f'shape {tuple(value.shape)}'
    if isinstance(value, (tuple, list)):
        inner = ', '.join(
            str(tuple(v.shape)) if isinstance(v, Tensor) else type(v).__name__
            for v in value)
        return f'a {type(value).__name__} of {len(value)} ({inner})'
    return type(value).__name__


def _log_name(loss_name: str) -> str:
    """A log key for ``loss_name`` without 'loss' in it (MMEngine sums
    every logged value whose key contains 'loss' into the total loss)."""
    return loss_name.replace('loss', '').strip('_.') or 'base'


@MODELS.register_module()
class AvatarDistiller(ConfigurableDistiller):
    """Avatar Knowledge Distillation on top of any MMRazor loss.

    "Avatar Knowledge Distillation: Self-ensemble Teacher Paradigm with
    Uncertainty" (Zhang et al., ACM MM 2023,
    https://arxiv.org/abs/2305.02722); reference code (MMRazor 0.x):
    https://github.com/Gumpest/AvatarKD/tree/36b104f7c852ed26440105f22e40391fc5cdc0a3/mmrazor/models/losses

    A ``ConfigurableDistiller`` whose selected losses learn from ``K``
    Avatars of the teacher instead of the teacher itself::

        L = sum_k w_k * L_base(norm(S), norm(A_k)),   A_k = P(T; xi_k)

    For every selected loss, at every call:

    1. the teacher input ``T`` is the argument mapped with
       ``from_student=False`` in ``loss_forward_mappings`` (found by that
       flag, never by argument name), read from its recorder *before* any
       teacher-side connector and detached;
    2. ``K`` Avatars come from one batched perturbation of ``T`` (per
       perturbation type when several are mixed; strengths may differ per
       Avatar);
    3. each Avatar's drift ``u_k`` (the pooled squared difference of its
       per-channel mean and std from ``T``'s, relative to ``T``'s pooled
       variance, :func:`~mmakd.models.utils.avatar_uncertainty`) gives the
       weights ``w_k = u_k ** (-1 / tau) / sum_j u_j ** (-1 / tau)``
       (:func:`~mmakd.models.utils.avatar_weights`), without gradient;
       ``uncertainty=None`` gives equal weights ``1 / K``; with ``K = 1``
       the weight is 1 whatever ``u``. ``u`` is undefined when ``T`` has
       no variance in any channel (a batch of one ``(1, C)``, or constant
       channels): the weights are then ``1 / K``, ``akd.<name>.u`` is
       logged as nan and a warning naming the batch size is logged once
       per loss (a tuple's level without variance is left out of ``u``);
    4. each Avatar goes through the teacher connector (if any), the student
       input and the Avatars are standardised per channel as
       ``normalize`` and ``normalize_at`` say, and the base loss is
       computed per Avatar and weighted.

    Alongside each loss it returns, for the training log (text and
    TensorBoard), ``akd.<name>.w<k>`` (the Avatar weights),
    ``akd.<name>.wmax_over_wmin`` (their spread) and ``akd.<name>.u``
    (their mean uncertainty); ``<name>`` is the loss name without "loss",
    because MMEngine adds every logged value whose key contains "loss" to
    the total loss.

    Note:
        Choices the specification leaves open (see ``docs/akd.md``):

        - Avatars are drawn before a teacher-side connector and each is
          passed through it, so losses whose teacher connector is trainable
          (e.g. FBKD) see ``K`` perturbed inputs.
        - A tuple of tensors (e.g. all FPN levels of one recorder) is
          perturbed level by level; ``u_k`` is the geometric mean over
          levels.
        - Student and teacher inputs need not have equal shapes: the
          base loss decides (MMRazor's ``PKDLoss`` resizes mismatched
          levels itself). An error the base loss raises is re-raised with
          the config key.
        - Randomness is drawn from a generator seeded by the runner's seed,
          the iteration, the rank and the call within the iteration, not
          from the global stream: the same seed gives the same Avatars,
          after a resume too, and ranks draw different Avatars.
        - The base loss runs in float32 with autocast disabled, so that
          statistics and softmaxes never run in half precision.
        - The finiteness check of the teacher inputs costs no
          device-to-host synchronisation per loss: all flags are read at
          once at the end of :meth:`compute_distill_losses`, or, under
          :class:`~mmakd.models.FlexibleTeacherDistill`, together with its
          check of the losses (one synchronisation per iteration).
        - ``K = 1``, ``AvatarDropout(p=0.1)`` and ``normalize='student'``
          is the reference's CWD variant (it standardised only the student
          and fed the raw Avatar to the loss); ``normalize=True`` (both
          sides) is its MasKD variant, and with ``normalize_at='record'``
          its MGD variant (student standardised before MGD's mask and
          generation block).

    Args:
        avatars (dict, optional): AKD settings (config key
            ``model.distiller.avatars``), all optional:

            - ``num_avatars`` (int): ``K >= 1``. Defaults to the number of
              per-Avatar strengths (or mixed perturbations) given, else 1.
            - ``perturbation`` (dict | list[dict]): Defaults to
              ``dict(type='AvatarDropout', p=0.1)``; a dict without
              ``type`` is an ``AvatarDropout``. A strength given as a
              sequence sets one value per Avatar
              (``dict(type='AvatarDropout', p=(0.05, 0.1, 0.2, 0.4))``); a
              list of dicts mixes perturbation types
              (:class:`~mmakd.models.AvatarPerturbationMix`).
            - ``normalize`` (bool | str): ``True``/``'both'``,
              ``'student'``, ``'teacher'`` or ``False``/``'none'``.
              Defaults to True.
            - ``normalize_at`` (str): Where to standardise: ``'loss'``, the
              tensors the loss compares (after the connectors);
              ``'record'``, the recorded tensors before the connectors
              (e.g. MGD's student before its mask and generation block);
              ``'auto'`` (default), ``'loss'`` when the loss compares
              feature maps (two tensors, or tuples of tensors of one
              length) and ``'record'`` otherwise (FBKD's connectors turn
              the features into masks and pooled maps), decided at the
              first call and logged.
            - ``uncertainty`` (dict | None): ``dict(tau=4.0)`` for adaptive
              weights, None for equal ones. Defaults to ``dict(tau=4.0)``.
            - ``losses`` (list[str] | None): Names in ``distill_losses`` to
              apply AKD to; None means all. Defaults to None.
            - ``check_finite`` (bool): Raise if a teacher input holds NaN or
              Inf. Defaults to True.
        **kwargs: ``ConfigurableDistiller`` arguments
            (``student_recorders``, ``teacher_recorders``, ``connectors``,
            ``distill_losses``, ``loss_forward_mappings``...).
    """

    def __init__(self,
                 avatars: Optional[Dict[str, Any]] = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        avatars = dict(avatars or {})
        unknown = set(avatars) - _AVATAR_KEYS
        if unknown:
            raise KeyError(f'{KEY} has unknown keys {sorted(unknown)}; '
                           f'known: {sorted(_AVATAR_KEYS)}')
        num_avatars = avatars.get('num_avatars')
        if num_avatars is not None:
            num_avatars = check_num_avatars(num_avatars, f'{KEY}.num_avatars')
        self.perturbation = self._build_perturbation(
            avatars.get('perturbation', dict(type='AvatarDropout', p=0.1)),
            num_avatars)
        self.num_avatars = self.perturbation.num_avatars
        normalize = avatars.get('normalize', True)
        if not isinstance(normalize, (bool, str, type(None))) \
                or normalize not in _NORMALIZE:
            raise ValueError(
                f"{KEY}.normalize must be True/'both', 'student', 'teacher' "
                f"or False/'none', got {normalize!r}")
        self.normalize = _NORMALIZE[normalize]
        normalize_at = avatars.get('normalize_at', 'auto')
        if normalize_at not in _NORMALIZE_AT:
            raise ValueError(f'{KEY}.normalize_at must be one of '
                             f'{_NORMALIZE_AT}, got {normalize_at!r}')
        self.normalize_at = normalize_at
        self.tau = self._parse_uncertainty(
            avatars.get('uncertainty', dict(tau=DEFAULT_TAU)))
        self.check_finite = bool(avatars.get('check_finite', True))
        self.teacher_keys = self._select_losses(avatars.get('losses'))
        self.log_names = {name: _log_name(name) for name in self.teacher_keys}
        if len(set(self.log_names.values())) < len(self.log_names):
            self.log_names = {
                name: f'{short}{i}'
                for i, (name, short) in enumerate(self.log_names.items())
            }
        #: Where each loss is standardised, once ``'auto'`` is resolved.
        self.resolved_normalize_at: Dict[str, str] = {}
        #: Set by an algorithm that reads :meth:`pending_finite_flags`
        #: together with its own checks (one synchronisation).
        self.defer_finite_check = False
        self._finite_checks: List[Tuple[str, str, List[Tensor], Tensor]] = []
        #: Losses already warned about an undefined ``u``, and the flags
        #: still to read (see :meth:`_watch_undefined`).
        self._undefined_warned: Set[str] = set()
        self._undefined_reads: List[Tuple[str, str, List[Tuple[int, ...]],
                                          Tensor, Any]] = []
        self._rng_step: Tuple[Any, int] = (None, 0)

    # ------------------------------------------------------------------
    # build-time validation
    # ------------------------------------------------------------------
    def _build_perturbation(
            self, cfg: Any,
            num_avatars: Optional[int]) -> BaseAvatarPerturbation:
        key = f'{KEY}.perturbation'
        if cfg is None:
            raise ValueError(
                f'{key} must be set; use '
                "dict(type='AvatarDropout', p=0.0) for Avatars equal to the "
                'teacher.')
        if isinstance(cfg, dict):
            # ``--cfg-options model.distiller.avatars.perturbation.p=0.2``
            # gives a dict without a type: keep the default perturbation.
            cfg = dict(cfg)
            cfg.setdefault('type', 'AvatarDropout')
            given = cfg.get('num_avatars')
            if given is not None and num_avatars is not None \
                    and given != num_avatars:
                raise ValueError(
                    f'{key}.num_avatars={given!r} contradicts '
                    f'{KEY}.num_avatars={num_avatars}; set only the '
                    'latter.')
        module = build_perturbation(cfg, key)
        if module.per_avatar:
            if num_avatars is not None and module.num_avatars != num_avatars:
                raise ValueError(
                    f'{key} defines {module.num_avatars} Avatars (one '
                    f'strength or member per Avatar: {module!r}) but '
                    f'{KEY}.num_avatars={num_avatars}; make them agree or '
                    f'leave {KEY}.num_avatars out.')
        elif num_avatars is not None:
            module.num_avatars = num_avatars
        return module

    @staticmethod
    def _parse_uncertainty(cfg: Any) -> Optional[float]:
        if cfg is None:
            return None
        if not isinstance(cfg, dict) or set(cfg) - {'tau'}:
            raise ValueError(f'{KEY}.uncertainty must be None or '
                             f'dict(tau=...), got {cfg!r}')
        tau = cfg.get('tau', DEFAULT_TAU)
        if isinstance(tau, bool) or not isinstance(tau, (int, float)) \
                or not tau > 0:
            raise ValueError(
                f'{KEY}.uncertainty.tau must be a number > 0, got {tau!r}')
        return float(tau)

    def _select_losses(self, names: Optional[List[str]]) -> Dict[str, str]:
        """Map each selected loss to the argument that takes the teacher."""
        if names is None:
            names = list(self.distill_losses)
        elif isinstance(names, str) or not isinstance(names, (list, tuple)):
            raise TypeError(f'{KEY}.losses must be a list of loss names or '
                            f'None, got {names!r}')
        if not names:
            raise ValueError(f'{KEY}.losses selects no loss; give None for '
                             'all losses, or leave AvatarDistiller out.')
        teacher_keys = {}
        for name in names:
            if name not in self.distill_losses:
                raise KeyError(
                    f'{KEY}.losses: {name!r} is not in distill_losses '
                    f'{sorted(self.distill_losses)}')
            mapping = self.loss_forward_mappings.get(name)
            if not mapping:
                raise KeyError(
                    f'{KEY}.losses: {name!r} has no entry in '
                    'loss_forward_mappings, so its teacher input is unknown')
            keys = [
                key for key, record in mapping.items()
                if isinstance(record, dict)
                and record.get('from_student') is False
            ]
            if len(keys) != 1:
                loss_type = type(self.distill_losses[name]).__name__
                raise ValueError(
                    f'{KEY}.losses: {loss_type} {name!r} has '
                    f'{len(keys)} teacher inputs (from_student=False in '
                    f'loss_forward_mappings.{name}: {keys}); AKD perturbs '
                    'exactly one. Leave it out of avatars.losses.')
            teacher_keys[name] = keys[0]
        return teacher_keys

    # ------------------------------------------------------------------
    # randomness
    # ------------------------------------------------------------------
    def _generator(self, device: torch.device) -> torch.Generator:
        """A generator seeded by (seed, iteration, rank, call in iteration).

        The seed is the message hub's ``'seed'`` info when something sets
        it, else ``torch.initial_seed()``, which MMEngine's runner sets from
        ``randomness.seed``. The iteration is the message hub's ``'iter'``
        under a runner, else a call counter.
        """
        hub = MessageHub.get_current_instance()
        seed = hub.get_info('seed')
        if seed is None:
            seed = torch.initial_seed()
        iteration = hub.get_info('iter')
        if iteration is None:
            iteration = self._rng_step[1]
            self._rng_step = (None, iteration + 1)
            call = 0
        else:
            last_iter, count = self._rng_step
            call = count if last_iter == iteration else 0
            self._rng_step = (iteration, call + 1)
        digest = hashlib.blake2b(
            f'akd/{seed}/{iteration}/{get_rank()}/{call}'.encode(),
            digest_size=8).digest()
        generator = torch.Generator(device=device)
        generator.manual_seed(int.from_bytes(digest, 'little') >> 1)
        return generator

    # ------------------------------------------------------------------
    # losses
    # ------------------------------------------------------------------
    def compute_distill_losses(self) -> Dict[str, Tensor]:
        """Compute all distillation losses; AKD for the selected ones."""
        losses: Dict[str, Tensor] = dict()
        generator = None
        self._finite_checks = []
        for loss_name, mapping in self.loss_forward_mappings.items():
            if loss_name not in self.teacher_keys:
                kwargs = {k: self.get_record(**r) for k, r in mapping.items()}
                losses[loss_name] = self.distill_losses[loss_name](**kwargs)
                continue
            teacher_key = self.teacher_keys[loss_name]
            record = dict(mapping[teacher_key])
            connector = record.pop('connector', None)
            connector_idx = record.pop('connector_idx', None)
            teacher = self.get_record(**record)
            if not _is_tensors(teacher):
                raise TypeError(
                    f'loss_forward_mappings.{loss_name}.{teacher_key}: the '
                    f'teacher record is {_describe(teacher)}; Avatars '
                    'perturb a tensor or a tuple of tensors.')
            teacher = _map(teacher, torch.Tensor.detach)
            if generator is None:
                first = teacher if isinstance(teacher, Tensor) else teacher[0]
                generator = self._generator(first.device)
            losses.update(
                self._avatar_loss(loss_name, mapping, teacher_key, teacher,
                                  connector, connector_idx, generator))
        if not self.defer_finite_check:
            self.check_teacher_finite()
        self._read_undefined()
        return losses

    # ------------------------------------------------------------------
    # records without teacher variance: u undefined, equal weights
    # ------------------------------------------------------------------
    def _watch_undefined(self, loss_name: str, teacher_key: str,
                         levels: List[Tensor], defined: List[Tensor]) -> None:
        """Warn once per loss when ``u`` is undefined at some level.

        A level with one value per channel (``N * prod(spatial) == 1``) is
        known from its shape and warned about at once. Constant channels
        are only known from the values: their flags are read without a
        host synchronisation (on the CPU at once, on an accelerator from a
        non-blocking copy once an event says it arrived, usually at the
        next call), so this costs nothing per iteration.
        """
        if loss_name in self._undefined_warned or any(
                entry[0] == loss_name for entry in self._undefined_reads):
            return
        single = [i for i, t in enumerate(levels) if _per_channel(t) == 1]
        shapes = [tuple(t.shape) for t in levels]
        if single:
            self._warn_undefined(loss_name, teacher_key, shapes, single,
                                 'single')
            return
        flags = ~torch.stack(defined)
        event = None
        if flags.device.type != 'cpu':
            if not hasattr(torch, 'Event'):  # torch < 2.4: no warning
                return
            flags = flags.to('cpu', non_blocking=True)
            event = torch.Event(device=levels[0].device)
            event.record()
        self._undefined_reads.append(
            (loss_name, teacher_key, shapes, flags, event))

    def _read_undefined(self) -> None:
        """Read the flags of :meth:`_watch_undefined` that have arrived."""
        pending = []
        for loss_name, teacher_key, shapes, flags, event in \
                self._undefined_reads:
            if event is not None and not event.query():
                pending.append((loss_name, teacher_key, shapes, flags, event))
                continue
            # numpy() reads host memory: no synchronisation
            undefined = [i for i, u in enumerate(flags.numpy()) if u]
            if undefined and loss_name not in self._undefined_warned:
                self._warn_undefined(loss_name, teacher_key, shapes, undefined,
                                     'constant')
        self._undefined_reads = pending

    def _warn_undefined(self, loss_name: str, teacher_key: str,
                        shapes: List[Tuple[int, ...]], undefined: List[int],
                        why: str) -> None:
        self._undefined_warned.add(loss_name)
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

    # ------------------------------------------------------------------
    # finiteness of the teacher inputs
    # ------------------------------------------------------------------
    def pending_finite_flags(self) -> List[Tensor]:
        """0-dim bool tensors, one per AKD loss of the last
        :meth:`compute_distill_losses`: whether its teacher input (hence its
        Avatars' statistics) is finite. Reading them costs a
        device-to-host synchronisation; an algorithm that sets
        ``defer_finite_check`` reads them with its own flags at once and
        calls :meth:`check_teacher_finite` only when one is False."""
        return [flag for *_, flag in self._finite_checks]

    def check_teacher_finite(self) -> None:
        """Raise ``FloatingPointError`` naming the mapping, recorder and
        levels if a teacher input of the last call holds NaN or Inf (one
        synchronisation for all losses; more only to name the culprit)."""
        flags = self.pending_finite_flags()
        if not flags or bool(torch.stack(flags).all()):
            return
        for loss_name, teacher_key, levels, flag in self._finite_checks:
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

    # ------------------------------------------------------------------
    # one AKD loss
    # ------------------------------------------------------------------
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
                if _is_tensors(value):
                    value = self._standardize(value, loss_name, key)
                value = self._connect(value, connector, connector_idx)
                if _is_tensors(value):
                    value = _map(value, _to_fp32)
            else:
                value = values[key] if values and key in values else \
                    self.get_record(**record)
                if student and _is_tensors(value):
                    value = _map(value, _to_fp32)
                    if std_student:
                        value = self._standardize(value, loss_name, key)
                elif student and std_student:
                    raise TypeError(
                        f'model.distiller.loss_forward_mappings.{loss_name}.'
                        f'{key} is {_describe(value)}, which cannot be '
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

    def _standardize(self, value: Record, loss_name: str, key: str) -> Record:
        try:
            return _map(value, standardize)
        except ValueError as err:
            raise ValueError(
                f'{KEY}.normalize={self.normalize!r}: cannot standardise '
                f'model.distiller.loss_forward_mappings.{loss_name}.{key}: '
                f'{err}') from err

    def _avatar_input(self, avatar: Record, connector: Optional[str],
                      connector_idx: Optional[int], at: str, loss_name: str,
                      teacher_key: str) -> Any:
        """One Avatar as the loss sees it: through the teacher connector,
        in float32, standardised where ``normalize`` says."""
        std_teacher = self.normalize in ('both', 'teacher')
        if std_teacher and at == 'record':
            avatar = self._standardize(avatar, loss_name, teacher_key)
        avatar = self._connect(avatar, connector, connector_idx)
        if _is_tensors(avatar):
            avatar = _map(avatar, _to_fp32)
            if std_teacher and at == 'loss':
                avatar = self._standardize(avatar, loss_name, teacher_key)
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
        paired = all(_pairs(v, avatar) for v in values.values())
        if self.normalize_at == 'loss' and not paired:
            loss_type = type(self.distill_losses[loss_name]).__name__
            raise TypeError(
                f'model.distiller.loss_forward_mappings.{loss_name}: '
                f'{loss_type} compares '
                f'{", ".join(_describe(v) for v in values.values())} with '
                f'{_describe(avatar)}, not two feature maps, so '
                f"{KEY}.normalize_at='loss' cannot standardise them alike; "
                f"set {KEY}.normalize_at='record' (or 'auto') to "
                'standardise the features before the connectors, or '
                'normalize=False.')
        at = 'loss' if paired else 'record'
        if at == 'record':
            print_log(
                f'{KEY}.normalize_at=auto: {loss_name} compares '
                f'{", ".join(_describe(v) for v in values.values())} with '
                f'{_describe(avatar)} (connector outputs, not feature maps), '
                'so its recorded tensors are standardised before the '
                'connectors.',
                logger='current')
        self.resolved_normalize_at[loss_name] = at
        return at, values if at == 'loss' else None

    def _avatar_loss(self, loss_name: str, mapping: Dict[str, Dict],
                     teacher_key: str, teacher: Record,
                     connector: Optional[str], connector_idx: Optional[int],
                     generator: torch.Generator) -> Dict[str, Tensor]:
        levels = [teacher] if isinstance(teacher, Tensor) else list(teacher)
        avatars = [self.perturbation(t, generator=generator) for t in levels]
        per_level = [
            avatar_uncertainty(t, a, return_defined=True)
            for t, a in zip(levels, avatars)
        ]
        uncertainty = combine_uncertainty([u for u, _ in per_level])
        if self.check_finite:
            # a level without teacher variance has no u: not a divergence
            finite = torch.stack([
                torch.isfinite(u).all() | ~defined for u, defined in per_level
            ]).all()
            self._finite_checks.append(
                (loss_name, teacher_key, levels, finite))
        self._watch_undefined(loss_name, teacher_key, levels,
                              [defined for _, defined in per_level])
        if self.tau is None:
            weights = torch.full_like(uncertainty, 1.0 / self.num_avatars)
        else:
            weights = avatar_weights(uncertainty, self.tau)

        def avatar_k(k: int) -> Record:
            return avatars[0][k] if isinstance(teacher, Tensor) else \
                type(teacher)(a[k] for a in avatars)

        at, values = self._resolve_normalize_at(loss_name,
                                                mapping, teacher_key,
                                                avatar_k(0), connector,
                                                connector_idx)
        kwargs = self._student_inputs(loss_name, mapping, teacher_key, at,
                                      values)
        loss_module = self.distill_losses[loss_name]
        device_type = weights.device.type
        total = 0.0
        for k in range(self.num_avatars):
            avatar = self._avatar_input(
                avatar_k(k), connector, connector_idx, at, loss_name,
                teacher_key)
            with torch.autocast(device_type=device_type, enabled=False):
                try:
                    value = loss_module(**kwargs, **{teacher_key: avatar})
                except (RuntimeError, ValueError, TypeError, AssertionError,
                        IndexError) as err:
                    raise _loss_error(err, loss_name, loss_module, kwargs,
                                      teacher_key, avatar) from err
            total = total + weights[k] * value

        name = self.log_names[loss_name]
        out = {
            loss_name: total,
            f'akd.{name}.u': uncertainty.mean(),
            f'akd.{name}.wmax_over_wmin': weights.max() / weights.min()
        }
        out.update({f'akd.{name}.w{k}': w for k, w in enumerate(weights)})
        return out

    def extra_repr(self) -> str:
        return (f'num_avatars={self.num_avatars}, normalize='
                f"'{self.normalize}', normalize_at='{self.normalize_at}', "
                f'tau={self.tau}, losses={list(self.teacher_keys)}')


def _to_fp32(t: Tensor) -> Tensor:
    return t.float()


def _per_channel(t: Tensor) -> int:
    """How many values per channel ``(N, C, *spatial)`` holds: the
    samples behind its channel statistics."""
    return t.numel() // t.shape[1] if t.dim() >= 2 and t.shape[1] else 0


def _loss_error(err: Exception, loss_name: str, loss_module: Any,
                kwargs: Dict[str,
                             Any], teacher_key: str, avatar: Any) -> Exception:
    """``err`` of the base loss, re-raised with the config key and what the
    loss was given."""
    inputs = ', '.join(f'{k}: {_describe(v)}' for k, v in kwargs.items()
                       if _is_tensors(v))
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
