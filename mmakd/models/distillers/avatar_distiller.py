# Copyright (c) mmakd contributors. All rights reserved.
"""AKD's distiller: K Avatars per loss, uncertainty weights, logging."""
import hashlib
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch
from mmengine.dist import get_rank
from mmengine.logging import MessageHub
from mmrazor.models.distillers import ConfigurableDistiller
from torch import Tensor

from mmakd.registry import MODELS
from ..perturbations import BaseAvatarPerturbation, build_perturbation
from ..perturbations.functional import check_num_avatars
from ..utils.statistics import avatar_uncertainty, avatar_weights, standardize

__all__ = ['AvatarDistiller']

KEY = 'model.distiller.avatars'
_AVATAR_KEYS = {'num_avatars', 'perturbation', 'normalize', 'uncertainty',
                'losses', 'check_finite'}
_NORMALIZE = {True: 'both', False: 'none', None: 'none', 'both': 'both',
              'student': 'student', 'teacher': 'teacher', 'none': 'none'}
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
    2. ``K`` Avatars come from one batched perturbation of ``T``;
    3. the weights ``w = softmax(-u / tau)`` come from each Avatar's
       scale-free drift ``u_k`` of per-channel statistics from ``T``
       (:func:`~mmakd.models.utils.avatar_uncertainty`), without gradient;
       ``uncertainty=None`` gives equal weights ``1 / K``;
    4. each Avatar goes through the teacher connector (if any), the student
       input (after its connector) and the Avatars are standardised per
       channel as ``normalize`` says, and the base loss is computed per
       Avatar and weighted.

    Alongside each loss it returns, for the training log (text and
    TensorBoard), ``akd.<name>.w<k>`` (the Avatar weights) and
    ``akd.<name>.u`` (their mean uncertainty); ``<name>`` is the loss name
    without "loss", because MMEngine adds every logged value whose key
    contains "loss" to the total loss.

    Note:
        Choices the specification leaves open (see ``docs/akd.md``):

        - Avatars are drawn before a teacher-side connector and each is
          passed through it, so losses whose teacher connector is trainable
          (e.g. FBKD) see ``K`` perturbed inputs.
        - A tuple of tensors (e.g. all FPN levels of one recorder) is
          perturbed level by level; ``u_k`` is averaged over levels.
        - Randomness is drawn from a generator seeded by the runner's seed,
          the iteration, the rank and the call within the iteration, not
          from the global stream: the same seed gives the same Avatars,
          after a resume too, and ranks draw different Avatars.
        - The base loss runs in float32 with autocast disabled, so that
          statistics and softmaxes never run in half precision.
        - ``K = 1``, ``AvatarDropout(p=0.1)`` and ``normalize='student'``
          is the reference's CWD variant (it standardised only the student
          and fed the raw Avatar to the loss); ``normalize=True`` (both
          sides) is its MGD and MasKD variants.

    Args:
        avatars (dict, optional): AKD settings (config key
            ``model.distiller.avatars``), all optional:

            - ``num_avatars`` (int): ``K >= 1``. Defaults to 1.
            - ``perturbation`` (dict): Defaults to
              ``dict(type='AvatarDropout', p=0.1)``; a dict without ``type``
              is an ``AvatarDropout``.
            - ``normalize`` (bool | str): ``True``/``'both'``,
              ``'student'``, ``'teacher'`` or ``False``/``'none'``.
              Defaults to True.
            - ``uncertainty`` (dict | None): ``dict(tau=1.0)`` for adaptive
              weights, None for equal ones. Defaults to ``dict(tau=1.0)``.
            - ``losses`` (list[str] | None): Names in ``distill_losses`` to
              apply AKD to; None means all. Defaults to None.
            - ``check_finite`` (bool): Raise if a teacher input holds NaN or
              Inf (one small device-to-host sync per loss and iteration).
              Defaults to True.
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
        self.num_avatars = check_num_avatars(
            avatars.get('num_avatars', 1), f'{KEY}.num_avatars')
        self.perturbation = self._build_perturbation(
            avatars.get('perturbation', dict(type='AvatarDropout', p=0.1)))
        normalize = avatars.get('normalize', True)
        if not isinstance(normalize, (bool, str, type(None))) \
                or normalize not in _NORMALIZE:
            raise ValueError(
                f"{KEY}.normalize must be True/'both', 'student', 'teacher' "
                f"or False/'none', got {normalize!r}")
        self.normalize = _NORMALIZE[normalize]
        self.tau = self._parse_uncertainty(
            avatars.get('uncertainty', dict(tau=1.0)))
        self.check_finite = bool(avatars.get('check_finite', True))
        self.teacher_keys = self._select_losses(avatars.get('losses'))
        self.log_names = {name: _log_name(name) for name in self.teacher_keys}
        if len(set(self.log_names.values())) < len(self.log_names):
            self.log_names = {
                name: f'{short}{i}'
                for i, (name, short) in enumerate(self.log_names.items())
            }
        self._rng_step: Tuple[Any, int] = (None, 0)

    # ------------------------------------------------------------------
    # build-time validation
    # ------------------------------------------------------------------
    def _build_perturbation(self, cfg: Any) -> BaseAvatarPerturbation:
        if cfg is None:
            raise ValueError(
                f'{KEY}.perturbation must be set; use '
                "dict(type='AvatarDropout', p=0.0) for Avatars equal to the "
                'teacher.')
        if isinstance(cfg, dict):
            # ``--cfg-options model.distiller.avatars.perturbation.p=0.2``
            # gives a dict without a type: keep the default perturbation.
            cfg = dict(cfg)
            cfg.setdefault('type', 'AvatarDropout')
            given = cfg.setdefault('num_avatars', self.num_avatars)
            if given != self.num_avatars:
                raise ValueError(
                    f'{KEY}.perturbation.num_avatars={given!r} contradicts '
                    f'{KEY}.num_avatars={self.num_avatars}; set only the '
                    'latter.')
        module = build_perturbation(cfg, f'{KEY}.perturbation')
        module.num_avatars = self.num_avatars
        return module

    @staticmethod
    def _parse_uncertainty(cfg: Any) -> Optional[float]:
        if cfg is None:
            return None
        if not isinstance(cfg, dict) or set(cfg) - {'tau'}:
            raise ValueError(f'{KEY}.uncertainty must be None or '
                             f'dict(tau=...), got {cfg!r}')
        tau = cfg.get('tau', 1.0)
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
        return losses

    def _avatar_loss(self, loss_name: str, mapping: Dict[str, Dict],
                     teacher_key: str, teacher: Record,
                     connector: Optional[str], connector_idx: Optional[int],
                     generator: torch.Generator) -> Dict[str, Tensor]:
        levels = [teacher] if isinstance(teacher, Tensor) else list(teacher)
        avatars = [self.perturbation(t, generator=generator) for t in levels]
        uncertainty = torch.stack([
            avatar_uncertainty(t, a) for t, a in zip(levels, avatars)
        ]).mean(0)
        if self.check_finite and not bool(torch.isfinite(uncertainty).all()):
            bad = [i for i, t in enumerate(levels)
                   if not bool(torch.isfinite(t).all())]
            raise FloatingPointError(
                f'loss_forward_mappings.{loss_name}.{teacher_key} (recorder '
                f"{mapping[teacher_key].get('recorder')!r}) holds NaN or Inf "
                f'at level(s) {bad}: the teacher diverged or its checkpoint '
                'is broken. (avatars.check_finite=False skips this check.)')
        if self.tau is None:
            weights = torch.full_like(uncertainty, 1.0 / self.num_avatars)
        else:
            weights = avatar_weights(uncertainty, self.tau)

        to_fp32 = lambda t: t.float()  # noqa: E731
        kwargs = {}
        for key, record in mapping.items():
            if key == teacher_key:
                continue
            value = self.get_record(**record)
            if record.get('from_student') and _is_tensors(value):
                value = _map(value, to_fp32)
                if self.normalize in ('both', 'student'):
                    value = _map(value, standardize)
            kwargs[key] = value
        students = [k for k, r in mapping.items() if r.get('from_student')]

        loss_module = self.distill_losses[loss_name]
        device_type = weights.device.type
        total = 0.0
        for k in range(self.num_avatars):
            avatar = avatars[0][k] if isinstance(teacher, Tensor) else \
                type(teacher)(a[k] for a in avatars)
            if connector:
                avatar = self.connectors[connector](avatar)
            if connector_idx is not None:
                avatar = avatar[connector_idx]
            if _is_tensors(avatar):
                avatar = _map(avatar, to_fp32)
                if self.normalize in ('both', 'teacher'):
                    avatar = _map(avatar, standardize)
            if k == 0 and len(students) == 1:
                self._check_pair(loss_name, students[0],
                                 kwargs[students[0]], teacher_key, avatar)
            with torch.autocast(device_type=device_type, enabled=False):
                value = loss_module(**kwargs, **{teacher_key: avatar})
            total = total + weights[k] * value

        name = self.log_names[loss_name]
        out = {loss_name: total, f'akd.{name}.u': uncertainty.mean()}
        out.update({f'akd.{name}.w{k}': w for k, w in enumerate(weights)})
        return out

    def _check_pair(self, loss_name: str, student_key: str, student: Any,
                    teacher_key: str, avatar: Any) -> None:
        """The student input must pair with the teacher input."""
        where = f'model.distiller.loss_forward_mappings.{loss_name}'
        hint = ('add a student connector that aligns it (e.g. '
                "dict(type='ConvModuleConnector', in_channel=..., "
                'out_channel=...)) or leave the loss out of avatars.losses')
        if isinstance(student, Tensor) and isinstance(avatar, Tensor):
            if student.shape != avatar.shape:
                raise ValueError(
                    f'{where}: student input {student_key!r} has '
                    f'{_describe(student)} but teacher input {teacher_key!r} '
                    f'has {_describe(avatar)}; AKD needs equal shapes: '
                    f'{hint}.')
            return
        paired = (isinstance(student, (tuple, list))
                  and isinstance(avatar, (tuple, list))
                  and len(student) == len(avatar) and all(
                      isinstance(s, Tensor) and isinstance(a, Tensor)
                      and s.shape == a.shape for s, a in zip(student, avatar)))
        if not paired and self.normalize != 'none':
            loss_type = type(self.distill_losses[loss_name]).__name__
            raise ValueError(
                f'{where}: {loss_type} takes a student input '
                f'{student_key!r} ({_describe(student)}) and a teacher input '
                f'{teacher_key!r} ({_describe(avatar)}) that do not pair up '
                'tensor by tensor, so they cannot be standardised alike. '
                f"Set {KEY}.normalize=False for this loss's config, or "
                'leave it out of avatars.losses.')

    def extra_repr(self) -> str:
        return (f'num_avatars={self.num_avatars}, normalize='
                f"'{self.normalize}', tau={self.tau}, "
                f'losses={list(self.teacher_keys)}')
