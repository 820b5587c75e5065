# Copyright (c) mmakd contributors. All rights reserved.
"""Probes on the model: teacher hooks, loss inputs, gradients, stats."""
import itertools
import math
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd


def _tensors(value: Any) -> List[Tensor]:
    """The tensors of a record: itself, or those of a tuple/list."""
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [v for v in value if isinstance(v, Tensor)]
    return []


def _shape(value: Any) -> Any:
    if isinstance(value, Tensor):
        return list(value.shape)
    return [list(t.shape) for t in _tensors(value)]


def _flat(tensors: List[Tensor]) -> Tensor:
    """The tensors' elements in one float64 vector."""
    return torch.cat([t.detach().reshape(-1).double() for t in tensors])


def tensor_stats(value: Any) -> Optional[Dict[str, Any]]:
    """Shape, mean, standard deviation and finiteness of a tensor or of a
    tuple of tensors (pooled over all their elements, in float64).

    Args:
        value: A loss input.

    Returns:
        dict | None: ``shape``, ``mean``, ``std``, ``finite``; None if
        ``value`` holds no tensor.
    """
    tensors = _tensors(value)
    if not tensors:
        return None
    flat = _flat(tensors)
    finite = bool(torch.isfinite(flat).all())
    return dict(
        shape=_shape(value),
        mean=float(flat.mean()) if flat.numel() else 0.0,
        std=float(flat.std(unbiased=False)) if flat.numel() else 0.0,
        finite=finite)


def cosine_similarity(student: Any, teacher: Any) -> Optional[float]:
    """Cosine similarity of two loss inputs flattened, or None when their
    shapes differ (nothing to compare element by element)."""
    s, t = _tensors(student), _tensors(teacher)
    if not s or len(s) != len(t) or any(a.shape != b.shape
                                        for a, b in zip(s, t)):
        return None
    a, b = _flat(s), _flat(t)
    denom = a.norm() * b.norm()
    return float(a @ b / denom) if denom > 0 else None


def _grad_norm(loss: Tensor, params: List[nn.Parameter]) -> float:
    """Norm of the gradient ``loss`` sends into ``params`` (0 without a
    path)."""
    if not loss.requires_grad:
        return 0.0
    grads = torch.autograd.grad(
        loss, params, retain_graph=True, allow_unused=True)
    squares = [
        g.detach().double().pow(2).sum() for g in grads if g is not None
    ]
    if not squares:
        return 0.0
    total = float(torch.stack(squares).sum())  # one host synchronisation
    return math.sqrt(total) if math.isfinite(total) else float('nan')


def _as_tensor(value: Any) -> Optional[Tensor]:
    """A logged loss as one tensor (MMEngine sums lists of them)."""
    if isinstance(value, Tensor):
        return value.mean()
    if isinstance(value, (list, tuple)) and value and all(
            isinstance(v, Tensor) for v in value):
        return sum(v.mean() for v in value)
    return None


class _TeacherWatch:
    """Which teacher dropout layers run in training mode before (hence
    possibly into) a recorded tensor, and which BatchNorm statistics
    change, in every teacher (``model.teachers`` of ``MultiTeacherDistill``,
    whose layers are named ``teachers[i].<module>``)."""

    def __init__(self, model: nn.Module) -> None:
        several = getattr(model, 'teachers', None)
        self.teachers: List[Tuple[str, nn.Module]] = [
            (f'teachers[{i}].', t) for i, t in enumerate(several)
        ] if several else [('', model.teacher)]
        self.active: set = set()  # active dropout layers that ran
        self.pending: set = set()  # ... in this step, so far
        self.perturbing: set = set()  # ... before a recorded module
        self.handles = []
        manager = model.distiller.teacher_recorders
        sources = {
            getattr(r, 'source', None)
            for r in manager.recorders.values()
        }
        self.module_recorders = True
        for prefix, teacher in self.teachers:
            modules = dict(teacher.named_modules())
            self.module_recorders &= all(s in modules for s in sources)
            for name, module in modules.items():
                drop = getattr(module, 'p', None) if isinstance(
                    module, _DropoutNd) else getattr(module, 'drop_prob', None)
                if isinstance(drop, (int, float)) and drop > 0:
                    self.handles.append(
                        module.register_forward_hook(
                            self._dropout_hook(prefix + name)))
                if name in sources:
                    self.handles.append(
                        module.register_forward_hook(self._record_hook))
        self.bn_before = self._bn_state()

    def new_step(self) -> None:
        self.pending.clear()

    def _dropout_hook(self, name: str) -> Callable:

        def hook(module, args, output):
            if module.training:
                self.active.add(name)
                self.pending.add(name)

        return hook

    def _record_hook(self, module, args, output) -> None:
        self.perturbing |= self.pending

    def _bn_state(self) -> Dict[str, Tensor]:
        state = {}
        for prefix, name, module in ((p, n, m) for p, t in self.teachers
                                     for n, m in t.named_modules()):
            if isinstance(module, _BatchNorm) and module.track_running_stats \
                    and module.running_mean is not None:
                state[prefix + name] = torch.cat(
                    [module.running_mean,
                     module.running_var]).detach().clone()
        return state

    def perturbing_dropout(self) -> List[str]:
        """Active dropout layers that ran before the last recorded teacher
        module (all active ones if a recorder is not a module hook)."""
        return sorted(
            self.perturbing if self.module_recorders else self.active)

    def changed_bn(self) -> List[str]:
        after = self._bn_state()
        return [
            name for name, before in self.bn_before.items()
            if name in after and not torch.equal(before, after[name])
        ]

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


class _LossInputs:
    """The inputs of each distillation loss's first call in a step (for
    AKD, the student input and the first Avatar as the loss sees them)."""

    def __init__(self, distiller: nn.Module) -> None:
        self.inputs: Dict[str, Dict[str, Any]] = {}
        self.handles = [
            module.register_forward_pre_hook(
                self._hook(name), with_kwargs=True)
            for name, module in distiller.distill_losses.items()
        ]
        # a fused AKD loss does not call its module: its fused target
        # receives the student input and the Avatars as the loss would
        self.fusions = []
        for name, fusion in getattr(distiller, 'fusions', {}).items():
            if fusion is not None:
                teacher_key = distiller.teacher_keys[name]
                (student_key, ) = (
                    k for k in distiller.loss_forward_mappings[name]
                    if k != teacher_key)
                fusion.fused_loss = self._fused(name, fusion.fused_loss,
                                                student_key, teacher_key)
                self.fusions.append(fusion)

    def _fused(self, name: str, fused_loss: Callable, student_key: str,
               teacher_key: str) -> Callable:

        def fused(student, avatars, weights):
            if name not in self.inputs:
                avatars = iter(avatars)
                first = next(avatars)
                self.inputs[name] = {student_key: student, teacher_key: first}
                avatars = itertools.chain([first], avatars)
            return fused_loss(student, avatars, weights)

        return fused

    def _hook(self, name: str) -> Callable:

        def hook(module, args, kwargs):
            if name not in self.inputs:
                captured = dict(kwargs)
                captured.update({f'arg{i}': a for i, a in enumerate(args)})
                self.inputs[name] = captured

        return hook

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()
        for fusion in self.fusions:
            del fusion.fused_loss  # the class's own again


def _split_losses(
    losses: Dict[str, Any], distill_names: List[str]
) -> Tuple[Dict[str, Tensor], Dict[str, Tensor], Dict[str, Tensor]]:
    """(distillation losses by name, task losses by name, AKD log values by
    key) of an algorithm's loss dict."""
    distill, task, akd = {}, {}, {}
    for key, value in losses.items():
        tensor = _as_tensor(value)
        if tensor is None:
            continue
        prefix, _, name = key.partition('.')
        if prefix == 'distill' and name in distill_names:
            distill[name] = tensor
        elif prefix == 'distill' and name.startswith('akd.'):
            akd[name] = tensor
        elif prefix == 'student' and 'loss' in name:
            task[name] = tensor
    return distill, task, akd


def _student_params(model: nn.Module) -> List[nn.Parameter]:
    return [p for p in model.student.parameters() if p.requires_grad]


def _teacher_forward(model: nn.Module) -> str:
    mode = getattr(model, 'teacher_forward', None)
    if mode:
        return mode
    from mmrazor.models import FpnTeacherDistill
    return 'feat' if isinstance(model, FpnTeacherDistill) else 'loss'
