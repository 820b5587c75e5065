# Copyright (c) mmakd contributors. All rights reserved.
"""AKD's distiller: K Avatars per loss, uncertainty weights, logging."""
from functools import partial
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import torch
from mmrazor.models.distillers import ConfigurableDistiller
from torch import Tensor

from mmakd.registry import MODELS
from ..avatars import DEFAULT_TAU, avatar_uncertainty, avatar_weights
from ..avatars.avatar_draw import AvatarDraw
from ..avatars.functional import check_num_avatars
from ..avatars.fusion import fusion_for
from ..avatars.seeding import AvatarSeeds
from ..avatars.teacher_avatars import (TeacherAvatarRecords,
                                       teacher_avatar_draws)
from ..avatars.teacher_checks import TeacherChecks
from ..avatars.uncertainty import combine_uncertainty
from .avatar_inputs import AvatarInputsMixin
from .avatar_records import (Record, describe, is_tensors, log_name,
                             loss_error, map_record)
from .avatar_settings import (AVATAR_KEYS, KEY, build_avatar_perturbation,
                              choose_fusions, parse_normalize,
                              parse_uncertainty, select_losses)

__all__ = ['AvatarDistiller']

#: Draws a loss's Avatars when called: per level, the Avatars and the
#: reference of their drift.
Draw = Callable[[], Tuple[List[AvatarDraw], List[Tensor]]]
#: Exceptions of a base loss re-raised with the config key.
_LOSS_ERRORS = (RuntimeError, ValueError, TypeError, AssertionError,
                IndexError)


@MODELS.register_module()
class AvatarDistiller(AvatarInputsMixin, ConfigurableDistiller):
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
       Avatar), or, for a source that runs the teacher, from its ``K``
       recorded runs;
    3. each Avatar's drift ``u_k`` (the pooled squared difference of its
       per-channel mean and std from ``T``'s, relative to ``T``'s pooled
       variance, :func:`~mmakd.models.avatars.avatar_uncertainty`) gives the
       weights ``w_k = u_k ** (-1 / tau) / sum_j u_j ** (-1 / tau)``
       (:func:`~mmakd.models.avatars.avatar_weights`), without gradient;
       ``uncertainty=None`` gives equal weights ``1 / K``; with ``K = 1``
       the weight is 1 whatever ``u``. ``u`` is undefined when ``T`` has
       no variance in any channel (a batch of one ``(1, C)``, or constant
       channels): the weights are then ``1 / K``, ``akd.<name>.u`` is
       logged as nan and a warning naming the batch size is logged once
       per loss (a tuple's level without variance is left out of ``u``);
    4. each Avatar goes through the teacher connector (if any), the student
       input and the Avatars are standardised per channel as
       ``normalize`` and ``normalize_at`` say;
    5. for a loss with an exact fused form (squared errors and softmax KLs:
       MMRazor's CWD, ``KLDivergence``, ``MGDLoss``, ``L2Loss``,
       ``PKDLoss``, ``ATLoss``; mmakd's ``MGKDGranularityLoss`` and
       ``MasKDLoss`` with frozen tokens) the weighted sum of the ``K``
       Avatar losses is computed as one loss against the weighted mean of
       the (transformed) Avatars plus a term without student gradient
       (:mod:`mmakd.models.avatars.fusion`): the same value and student
       gradient, the student side evaluated once; any other loss is
       computed per Avatar and weighted.

    Alongside each loss it returns, for the training log (text and
    TensorBoard), ``akd.<name>.w<k>`` (the Avatar weights),
    ``akd.<name>.wmax_over_wmin`` (their spread) and ``akd.<name>.u``
    (their mean uncertainty); ``<name>`` is the loss name without "loss",
    because MMEngine adds every logged value whose key contains "loss" to
    the total loss.

    Note:
        Choices the specification leaves open are listed in ``docs/akd.md``
        ("Choices"): Avatars are drawn before a teacher-side connector and
        each passes through it; a tuple of levels is perturbed level by
        level (``u_k`` is the geometric mean over levels); an error of the
        base loss is re-raised with the config key; randomness comes from
        :class:`~mmakd.models.avatars.seeding.AvatarSeeds` (same seed, same
        Avatars, after a resume too; ranks differ); the base loss runs in
        float32 with autocast disabled; the finiteness check costs no
        per-loss host synchronisation. ``K = 1``, ``AvatarDropout(p=0.1)``
        and ``normalize='student'`` is the reference's CWD variant,
        ``normalize=True`` its MasKD variant, and with
        ``normalize_at='record'`` its MGD variant.

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
              ``dict(type='TeacherViews', ...)`` or
              ``dict(type='TeacherDropout', ...)`` make each Avatar a run
              of the teacher itself (views of the input, dropout inside
              it), recorded by mmakd's ``FlexibleTeacherDistill``; their
              drift is taken from the Avatars' mean
              (:class:`~mmakd.models.avatars.BaseTeacherAvatars`).
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
            - ``fuse`` (str | bool): ``'auto'`` (default) fuses every loss
              that has an exact fused form when ``K > 1`` and loops over
              the Avatars for the others; ``False`` loops for all;
              ``True`` fuses at any ``K`` and fails at build time, naming
              the loss, if one has no fused form. The choice per loss is
              logged at build.
        **kwargs: ``ConfigurableDistiller`` arguments
            (``student_recorders``, ``teacher_recorders``, ``connectors``,
            ``distill_losses``, ``loss_forward_mappings``...).
    """

    def __init__(self,
                 avatars: Optional[Dict[str, Any]] = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        avatars = dict(avatars or {})
        unknown = set(avatars) - AVATAR_KEYS
        if unknown:
            raise KeyError(f'{KEY} has unknown keys {sorted(unknown)}; '
                           f'known: {sorted(AVATAR_KEYS)}')
        num_avatars = avatars.get('num_avatars')
        if num_avatars is not None:
            num_avatars = check_num_avatars(num_avatars, f'{KEY}.num_avatars')
        self.perturbation = build_avatar_perturbation(
            avatars.get('perturbation', dict(type='AvatarDropout', p=0.1)),
            num_avatars)
        self.num_avatars = self.perturbation.num_avatars
        self.normalize, self.normalize_at = parse_normalize(
            avatars.get('normalize', True),
            avatars.get('normalize_at', 'auto'))
        self.tau = parse_uncertainty(
            avatars.get('uncertainty', dict(tau=DEFAULT_TAU)))
        self.check_finite = bool(avatars.get('check_finite', True))
        self.teacher_keys = select_losses(
            avatars.get('losses'), self.distill_losses,
            self.loss_forward_mappings)
        self.log_names = {name: log_name(name) for name in self.teacher_keys}
        if len(set(self.log_names.values())) < len(self.log_names):
            self.log_names = {
                name: f'{short}{i}'
                for i, (name, short) in enumerate(self.log_names.items())
            }
        self.fuse = avatars.get('fuse', 'auto')
        #: Each AKD loss's fused target, or None for the per-Avatar loop.
        self.fusions = choose_fusions(self.fuse, self.num_avatars,
                                      self.teacher_keys, self.distill_losses,
                                      self.loss_forward_mappings,
                                      self.connectors)
        #: Where each loss is standardised, once ``'auto'`` is resolved.
        self.resolved_normalize_at: Dict[str, str] = {}
        #: Set by an algorithm that reads :meth:`pending_finite_flags`
        #: together with its own checks (one synchronisation).
        self.defer_finite_check = False
        self.teacher_checks = TeacherChecks(self.loss_forward_mappings,
                                            self.log_names, self.num_avatars)
        self.avatar_seeds = AvatarSeeds()
        #: Set by the algorithm each iteration when the Avatars run the
        #: teacher (views, in-network dropout): the ``K`` Avatars' records
        #: per teacher recorder; read once by :meth:`compute_distill_losses`.
        self.teacher_avatars: Optional[TeacherAvatarRecords] = None

    def pending_finite_flags(self) -> List[Tensor]:
        """0-dim bool tensors, one per AKD loss of the last
        :meth:`compute_distill_losses`: whether its teacher input (hence its
        Avatars' statistics) is finite. Reading them costs a
        device-to-host synchronisation; an algorithm that sets
        ``defer_finite_check`` reads them with its own flags at once and
        calls :meth:`check_teacher_finite` only when one is False."""
        return self.teacher_checks.pending_flags()

    def check_teacher_finite(self) -> None:
        """Raise ``FloatingPointError`` naming the mapping, recorder and
        levels if a teacher input of the last call holds NaN or Inf (one
        synchronisation for all losses; more only to name the culprit)."""
        self.teacher_checks.check_finite()

    def compute_distill_losses(self) -> Dict[str, Tensor]:
        """Compute all distillation losses; AKD for the selected ones."""
        losses: Dict[str, Tensor] = dict()
        generator = None
        self.teacher_checks.finite = []
        recorded, self.teacher_avatars = self.teacher_avatars, None
        if self.perturbation.runs_teacher and recorded is None:
            raise RuntimeError(
                f'{KEY}.perturbation: {type(self.perturbation).__name__} '
                'draws Avatars by running the teacher, and no Avatars were '
                "recorded: use mmakd's model.type='FlexibleTeacherDistill' "
                "(or 'MultiTeacherDistill'), which runs the teacher for "
                "them (MMRazor's SingleTeacherDistill runs it once).")
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
            if not is_tensors(teacher):
                raise TypeError(
                    f'loss_forward_mappings.{loss_name}.{teacher_key}: the '
                    f'teacher record is {describe(teacher)}; Avatars '
                    'perturb a tensor or a tuple of tensors.')
            teacher = map_record(teacher, torch.Tensor.detach)
            if recorded is not None:  # the teacher's own runs
                draw = partial(
                    teacher_avatar_draws, recorded[record['recorder']],
                    record.get('record_idx', 0), record.get('data_idx'),
                    f'loss_forward_mappings.{loss_name}.{teacher_key}')
            else:
                if generator is None:
                    first = teacher if isinstance(teacher, Tensor) else \
                        teacher[0]
                    generator = self.avatar_seeds.generator(first.device)
                draw = partial(self._draw, teacher, generator)
            losses.update(
                self._avatar_loss(loss_name, mapping, teacher_key, teacher,
                                  connector, connector_idx, draw))
        if not self.defer_finite_check:
            self.check_teacher_finite()
        self.teacher_checks.read_undefined()
        return losses

    def _weights(self, loss_name: str, teacher_key: str, levels: List[Tensor],
                 avatars: List[AvatarDraw]) -> Tuple[Tensor, Tensor, List]:
        """The Avatars' uncertainty, weights and per-level channel moments
        ``(mean, var)`` of shape ``(K, C)``; queues the checks."""
        per_level = [
            avatar_uncertainty(t, a, return_defined=True, return_moments=True)
            for t, a in zip(levels, avatars)
        ]
        uncertainty = combine_uncertainty([u for u, _, _ in per_level])
        checks = self.teacher_checks
        if self.check_finite:
            checks.add_finite(loss_name, teacher_key, levels,
                              [(u, d) for u, d, _ in per_level])
        checks.watch_undefined(loss_name, teacher_key, levels,
                               [defined for _, defined, _ in per_level])
        if self.tau is None:
            weights = torch.full_like(uncertainty, 1.0 / self.num_avatars)
        else:
            weights = avatar_weights(uncertainty, self.tau)
        return uncertainty, weights, [m for _, _, m in per_level]

    def _draw(
            self, teacher: Record, generator: torch.Generator
    ) -> Tuple[List[AvatarDraw], List[Tensor]]:
        """Avatars of each level of ``teacher``, drawn by the perturbation,
        and the references of their drift (the levels)."""
        levels = [teacher] if isinstance(teacher, Tensor) else list(teacher)
        return [
            self.perturbation.draw(t, generator=generator) for t in levels
        ], levels

    def _avatar_loss(self, loss_name: str, mapping: Dict[str, Dict],
                     teacher_key: str, teacher: Record,
                     connector: Optional[str], connector_idx: Optional[int],
                     draw: Draw) -> Dict[str, Tensor]:
        stack, references = draw()
        uncertainty, weights, moments = self._weights(loss_name, teacher_key,
                                                      references, stack)
        del references
        at, values = self._resolve_normalize_at(loss_name, mapping,
                                                teacher_key,
                                                _pick(teacher, stack, 0),
                                                connector, connector_idx)
        kwargs = self._student_inputs(loss_name, mapping, teacher_key, at,
                                      values)
        stacks = [stack]
        del stack  # the Avatars live in inputs() only, while they are used

        loss_module = self.distill_losses[loss_name]
        fusion = self.fusions.get(loss_name)
        if fusion is not None and fusion.loss is not loss_module:
            # the loss module was replaced after the build
            fusion = self.fusions[loss_name] = fusion_for(loss_module)[0]
        device = weights.device.type
        autocast = dict(
            device_type=device,
            enabled=torch.is_autocast_enabled(device),
            dtype=torch.get_autocast_dtype(device))

        def inputs() -> Iterator[Any]:
            stack = stacks.pop()
            for k in range(self.num_avatars):
                # the fused path reuses the moments of the drift (no pass)
                moments_k = [(m[k], v[k]) for m, v in moments] if fusion \
                    else None
                with torch.autocast(**autocast):  # connectors as the model
                    avatar = [
                        self._avatar_input(
                            _pick(teacher, stack, k), connector, connector_idx,
                            at, loss_name, teacher_key, moments_k)
                    ]
                if k == self.num_avatars - 1:
                    del stack  # free once used, whoever keeps the generator
                # outside autocast (its state is global), holding no
                # reference while the consumer uses the Avatar
                yield avatar.pop()

        with torch.autocast(device_type=device, enabled=False):
            try:
                if fusion is not None:
                    (student, ) = kwargs.values()
                    total = fusion.fused_loss(student, inputs(), weights)
                else:
                    total = 0.0
                    for w, avatar in zip(weights, inputs()):
                        total = total + w * loss_module(
                            **kwargs, **{teacher_key: avatar})
            except _LOSS_ERRORS as err:
                raise loss_error(err, loss_name, loss_module, kwargs,
                                 teacher_key, describe(teacher)) from err

        name = self.log_names[loss_name]
        out = {
            loss_name: total,
            f'akd.{name}.u': uncertainty.mean(),
            f'akd.{name}.wmax_over_wmin': weights.max() / weights.min()
        }
        out.update({f'akd.{name}.w{k}': w for k, w in enumerate(weights)})
        return out

    def extra_repr(self) -> str:
        fused = [name for name, f in self.fusions.items() if f is not None]
        return (f'num_avatars={self.num_avatars}, normalize='
                f"'{self.normalize}', normalize_at='{self.normalize_at}', "
                f'tau={self.tau}, losses={list(self.teacher_keys)}, '
                f'fused={fused}')


def _pick(teacher: Record, stack: List[AvatarDraw], k: int) -> Record:
    """Avatar ``k`` of a stack per level, shaped as the teacher record."""
    return stack[0][k] if isinstance(teacher, Tensor) else \
        type(teacher)(a[k] for a in stack)
