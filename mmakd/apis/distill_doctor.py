# Copyright (c) mmakd contributors. All rights reserved.
"""A distillation doctor: run a few training steps of a distillation config
at learning rate 0 and say, loss by loss, why it may not help.

Used by ``tools/analysis_tools/analyze_distill.py``; see
``docs/user_guide.md`` ("Diagnose a distillation that does not help") for
how to read
the report. Every number comes from the model the config builds, on real
batches of its training dataloader or on generated ones (``fake_data``).
"""
import contextlib
import copy
import itertools
import logging
import math
import os
import re
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner.utils import set_random_seed
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd

from .offline_weights import offline_hint, offline_model_config

__all__ = [
    'analyze_distill', 'WARNING_KINDS', 'format_report', 'markdown_report',
    'plot_grad_shares', 'SHARE_MAX', 'SHARE_MIN', 'SCALE_RATIO',
    'offline_model_config'
]

#: A distillation loss with more of the student's gradient than this
#: drowns the task losses.
SHARE_MAX = 0.9
#: A distillation loss with less than this is drowned by them.
SHARE_MIN = 0.01
#: Student and teacher tensors whose standard deviations differ by more
#: than this factor, compared without normalisation.
SCALE_RATIO = 10.0
#: Values this close to zero count as zero.
ZERO = 1e-12
#: Relative spread under which a loss counts as constant across batches.
CONSTANT_RTOL = 1e-6

#: Every warning kind, in the order the report lists them.
WARNING_KINDS = ('not_summed', 'nonfinite', 'zero_loss', 'constant_loss',
                 'no_gradient', 'dominant_loss', 'negligible_loss',
                 'scale_mismatch', 'teacher_no_checkpoint',
                 'teacher_bn_updating', 'teacher_dropout_active')

#: Losses that standardise or L2-normalise both inputs themselves, so the
#: scale of the raw tensors does not matter.
_NORMALISING_LOSSES = ('PKDLoss', 'ATLoss')


# ---------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------
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


def _mean(values: List[float]) -> float:
    return sum(values) / len(values) if values else float('nan')


def _fmt_shape(shape: Any) -> str:
    if not shape:
        return '-'
    if isinstance(shape[0], list):
        return ' '.join('x'.join(map(str, s)) for s in shape)
    return 'x'.join(map(str, shape))


# ---------------------------------------------------------------------------
# building
# ---------------------------------------------------------------------------
def _teacher_ckpt_key(cfg: Config) -> str:
    """The key that gives the teacher its checkpoint: ``model.teacher_ckpt``,
    or ``model.teacher_ckpts[i]`` for ``MultiTeacherDistill``."""
    if cfg.model.get('teachers') is not None or \
            cfg.model.get('type') == 'MultiTeacherDistill':
        return 'model.teacher_ckpts[i]'
    return 'model.teacher_ckpt'


def _build(cfg: Config,
           checkpoint: Optional[str],
           init_weights: bool,
           offline: bool = False) -> Tuple[nn.Module, bool, List[str]]:
    """The algorithm with its weights, whether the teacher's came from a
    checkpoint, and the teacher tensors that checkpoint lacked."""
    from mmakd.registry import MODELS
    init_default_scope(cfg.get('default_scope', 'mmrazor'))
    ckpt_key = _teacher_ckpt_key(cfg)
    try:
        model = MODELS.build(copy.deepcopy(cfg.model))
    except Exception as err:  # noqa: B902 - any model may refuse
        hint = '' if offline else offline_hint(cfg)
        raise RuntimeError(
            f'building cfg.model ({cfg.model.get("type")}) failed: '
            f'{type(err).__name__}: {str(err).rstrip(".")}. If the teacher '
            'checkpoint cannot be read or downloaded here, pass '
            f'--cfg-options {ckpt_key}=LOCAL_FILE (or {ckpt_key}=None: the '
            'report then warns that the teacher is untrained).' +
            hint) from err
    if getattr(model, 'distiller', None) is None or not hasattr(
            model.distiller, 'loss_forward_mappings'):
        raise TypeError(
            f'cfg.model ({type(model).__name__}) has no distiller with '
            'distill_losses and loss_forward_mappings; the doctor analyses '
            'distillation algorithms (SingleTeacherDistill, '
            'FpnTeacherDistill, FlexibleTeacherDistill...).')
    if not hasattr(model, 'teacher') or not hasattr(model, 'student'):
        raise TypeError(f'cfg.model ({type(model).__name__}) has no '
                        'teacher and student to analyse.')
    if init_weights:
        try:
            with _quiet():  # MMEngine logs every parameter's initialiser
                model.init_weights()
        except Exception as err:  # noqa: B902 - e.g. a download
            hint = '' if offline else offline_hint(cfg, only_init=True)
            raise RuntimeError(
                f'model.init_weights() failed ({type(err).__name__}: {err}); '
                'a pretrained init_cfg could not be loaded.' +
                (hint or ' Run where it can be downloaded, or pass '
                 '--offline to leave downloaded weights to the modules\' '
                 'own initialisers.')) from err
    teacher_ckpt = cfg.model.get('teacher_ckpt')
    teacher_ckpts = cfg.model.get('teacher_ckpts')  # MultiTeacherDistill
    teacher_loaded = bool(
        teacher_ckpt) or bool(teacher_ckpts) and all(teacher_ckpts)
    missing: List[str] = []
    # mmakd's algorithms load strictly by default: nothing can be missing,
    # and the checkpoint need not be read a second time
    strict = type(model).__name__ in (
        'FlexibleTeacherDistill', 'MultiTeacherDistill') and \
        cfg.model.get('teacher_ckpt_strict', True)
    if not strict and not getattr(model, 'fused_teacher_convs', None):
        if teacher_ckpts:
            for i, (teacher, path) in enumerate(
                    zip(
                        getattr(model, 'teachers', [model.teacher]),
                        teacher_ckpts)):
                if path:
                    missing += [
                        f'model.teachers[{i}].{k}'
                        for k in _missing_teacher_keys(teacher, path)
                    ]
        elif teacher_ckpt:
            missing = _missing_teacher_keys(model.teacher, teacher_ckpt)
    teacher_spec = cfg.model.get('teacher')
    if isinstance(teacher_spec, dict) and teacher_spec.get('pretrained'):
        teacher_loaded = True  # from the model's metafile (MMRazor)
    if checkpoint and _load_algorithm_checkpoint(model, checkpoint, ckpt_key):
        teacher_loaded, missing = True, []
    return model, teacher_loaded, missing


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _missing_teacher_keys(teacher: nn.Module, path: str) -> List[str]:
    """Teacher tensors that ``path`` does not hold with the same shape
    (MMRazor loads teacher checkpoints non-strictly: those stay as
    initialised)."""
    from mmengine.runner.checkpoint import _load_checkpoint
    ckpt = _load_checkpoint(path, map_location='cpu')
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else {}
    state = {re.sub(r'^module\.', '', k): v for k, v in state.items()}
    return [
        key for key, value in teacher.state_dict().items() if key not in state
        or getattr(state[key], 'shape', None) != value.shape
    ]


def _load_algorithm_checkpoint(model: nn.Module,
                               path: str,
                               ckpt_key: str = 'model.teacher_ckpt') -> bool:
    """Load a checkpoint of the whole algorithm (what training writes);
    return whether it held teacher weights."""
    from mmengine.runner.checkpoint import _load_checkpoint
    ckpt = _load_checkpoint(path, map_location='cpu')
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else {}
    roots = sorted({k.split('.', 1)[0] for k in state})
    if not any(r in ('architecture', 'teacher') for r in roots):
        raise KeyError(
            f'--checkpoint {path}: no key starts with "architecture." or '
            f'"teacher." (top-level keys: {roots[:8]}); it is not a '
            'checkpoint of a distillation algorithm. For a teacher '
            f'checkpoint use --cfg-options {ckpt_key}=' + path)
    missing = [
        k for k in model.load_state_dict(state, strict=False).missing_keys
        if k.startswith('architecture.')
    ]
    if missing:
        raise KeyError(
            f'--checkpoint {path} lacks {len(missing)} of the student\'s '
            f'tensors (e.g. {missing[0]}): it is not a checkpoint of this '
            'config\'s algorithm.')
    return 'teacher' in roots


# ---------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------
def default_fake_size(cfg: Config,
                      model: Optional[nn.Module] = None) -> Tuple[int, int]:
    """The input size a config trains at, for generated batches: the size
    its data preprocessor pads to (a segmentor's crop), else the first
    ``crop_size`` or ``scale`` of the training pipeline (MMDetection's
    ``scale`` is ``(w, h)``), else 224x224.

    Args:
        cfg (Config): The config.
        model (nn.Module, optional): The built algorithm, whose data
            preprocessor is looked at first.

    Returns:
        tuple[int, int]: ``(H, W)``.
    """
    size = getattr(getattr(model, 'data_preprocessor', None), 'size', None)
    if size:
        return int(size[0]), int(size[1])
    dataset = (cfg.get('train_dataloader') or {}).get('dataset') or {}
    while isinstance(dataset, dict) and 'dataset' in dataset:
        dataset = dataset['dataset']  # RepeatDataset and the like
    for step in (dataset.get('pipeline') or []):
        for key in ('crop_size', 'scale'):
            value = step.get(key) if isinstance(step, dict) else None
            if isinstance(value, int):
                return value, value
            if isinstance(value, (tuple, list)) and len(value) == 2 and \
                    all(isinstance(v, int) for v in value):
                return (value[1], value[0]) if key == 'scale' else \
                    (value[0], value[1])
    return 224, 224


def _fake_batches(model: nn.Module, size: Tuple[int, int],
                  batch_size: int) -> Iterator[Dict[str, Any]]:
    from mmakd.testing import batch_for_model
    seed = 0
    while True:  # a new batch every step: a constant loss means something
        yield batch_for_model(model.student, batch_size, *size, seed=seed)
        seed += 1


def _dataloader_batches(cfg: Config, batch_size: Optional[int],
                        seed: int) -> Iterator[Any]:
    from mmengine.runner import Runner
    loader_cfg = copy.deepcopy(cfg.get('train_dataloader'))
    if not loader_cfg:
        raise KeyError('the config has no train_dataloader; use --fake-data '
                       'to analyse on generated batches.')
    loader_cfg['num_workers'] = 0
    loader_cfg['persistent_workers'] = False
    if batch_size:
        loader_cfg['batch_size'] = batch_size
    try:
        loader = Runner.build_dataloader(loader_cfg, seed=seed)
    except Exception as err:  # noqa: B902 - missing files and the like
        raise RuntimeError(
            f'cfg.train_dataloader could not be built ({type(err).__name__}:'
            f' {err}); point it at the data with --cfg-options '
            'train_dataloader.dataset.data_root=..., or use --fake-data.'
        ) from err
    while True:
        yielded = False
        for batch in loader:
            yielded = True
            yield batch
        if not yielded:
            raise RuntimeError('cfg.train_dataloader yields no batch.')


# ---------------------------------------------------------------------------
# watching the teacher and the losses
# ---------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------
# the analysis
# ---------------------------------------------------------------------------
def analyze_distill(cfg: Config,
                    checkpoint: Optional[str] = None,
                    fake_data: bool = False,
                    size: Optional[Tuple[int, int]] = None,
                    batch_size: Optional[int] = None,
                    iters: int = 3,
                    device: str = 'cpu',
                    init_weights: bool = True,
                    seed: int = 0,
                    progress: Optional[Callable[[str], None]] = None,
                    offline: bool = False) -> Dict[str, Any]:
    """Run ``iters`` training steps of a distillation config at learning
    rate 0 and diagnose every distillation loss.

    Each step runs the algorithm's training forward (``mode='loss'``) in
    training mode, exactly as ``train_step`` does, then takes, for every
    task and distillation loss, the gradient it alone sends into the
    student's parameters. No optimizer step is taken, which at learning
    rate 0 is the same: the weights stay as built (BatchNorm running
    statistics update as in training), so every step sees the same model
    on a new batch.

    Args:
        cfg (Config): A distillation config (model, and
            ``train_dataloader`` unless ``fake_data``).
        checkpoint (str, optional): A checkpoint of the whole algorithm
            (``architecture.``/``teacher.`` keys, as training writes) to
            load after ``init_weights``. Defaults to None.
        fake_data (bool): Generated batches (a new one each step) instead
            of the training dataloader's. Defaults to False.
        size (tuple[int, int], optional): ``(H, W)`` of generated batches;
            defaults to :func:`default_fake_size`.
        batch_size (int, optional): Batch size; defaults to the
            dataloader's, or 2 with ``fake_data``.
        iters (int): Training steps. Defaults to 3.
        device (str): ``'cpu'`` or ``'cuda'``. Defaults to ``'cpu'``.
        init_weights (bool): Call ``model.init_weights()`` as the runner
            does before training. Defaults to True.
        seed (int): Seed of the global generators (Python, NumPy, torch).
            Defaults to 0.
        progress (callable, optional): Called with a line of progress.
        offline (bool): Download nothing (``--offline``): every weight that
            would be downloaded, or whose local file is missing (teacher
            checkpoints, ``pretrained``, ``Pretrained`` init_cfgs anywhere in
            the model tree), is left to the modules' own initialisers, which
            all still run; see :func:`offline_model_config`. The report
            lists them under ``random_weights``. Defaults to False.

    Returns:
        dict: ``losses.<name>.{type, value, values, grad_norm, grad_share,
        student, teacher, cosine, akd}``, ``task_losses.<name>.{value,
        values, grad_norm, grad_share}``, ``teacher`` (checkpoint,
        forward mode, changing BatchNorms, active dropout), ``warnings``
        (``[{loss, kind, message}]``), ``random_weights`` (with
        ``offline``: ``[{key, was, file, module}]``) and the run's settings.
    """
    say = progress or (lambda line: None)
    if iters < 1:
        raise ValueError(f'iters must be >= 1, got {iters}')
    set_random_seed(seed)  # torch, numpy (data pipelines) and random
    cfg = copy.deepcopy(cfg)
    random_weights: List[Dict[str, Any]] = []
    if offline:
        if checkpoint and '://' in checkpoint:
            raise ValueError(
                f'--checkpoint {checkpoint} is a URL, and --offline downloads '
                'nothing: download it elsewhere and pass the local file.')
        cfg, random_weights = offline_model_config(cfg)
        say(f'offline: {len(random_weights)} downloaded or missing weight(s) '
            "left to the modules' initialisers")
    say(f'building {cfg.model.get("type")} ...')
    model, teacher_loaded, missing = _build(cfg, checkpoint, init_weights,
                                            offline)
    _check_modules(model, random_weights)
    if fake_data:
        size = tuple(size) if size else default_fake_size(cfg, model)
        batch_size = batch_size or 2
        pre = model.data_preprocessor
        if getattr(pre, 'size', None) is not None:
            pre.size = tuple(size)  # pad to the generated size only
        batches = _fake_batches(model, size, batch_size)
    else:
        batches = _dataloader_batches(cfg, batch_size, seed)
    model.to(device)
    model.train()
    distiller = model.distiller
    if hasattr(model, 'nonfinite') and hasattr(model, '_distill_losses'):
        # report non-finite losses instead of raising or skipping them
        model._distill_losses = distiller.compute_distill_losses
    names = list(distiller.loss_forward_mappings)
    params = _student_params(model)
    watch = _TeacherWatch(model)
    captured = _LossInputs(distiller)
    per_iter: List[Dict[str, Any]] = []
    batch_sizes: List[int] = []
    try:
        for step in range(iters):
            batch = next(batches)
            batch_sizes.append(len(batch['inputs']))
            captured.inputs = {}
            watch.new_step()
            data = model.data_preprocessor(batch, True)
            losses = model._run_forward(data, mode='loss')
            distill, task, akd = _split_losses(losses, names)
            record = dict(distill={}, task={}, akd={}, inputs={})
            for group, values in (('distill', distill), ('task', task)):
                for name, value in values.items():
                    record[group][name] = dict(
                        value=float(value.detach().float()),
                        grad_norm=_grad_norm(value, params))
            record['akd'] = {k: float(v.detach()) for k, v in akd.items()}
            with torch.no_grad():
                for name in names:
                    record['inputs'][name] = _describe_inputs(
                        distiller, name, captured.inputs.get(name, {}))
            _set_shares(record)
            per_iter.append(record)
            model.zero_grad(set_to_none=True)
            shown = ', '.join(f'{n}={r["value"]:.4g}'
                              for n, r in record['distill'].items())
            say(f'step {step + 1}/{iters}: {shown}')
        bn_changed = watch.changed_bn()
        dropout = watch.perturbing_dropout()
    finally:
        watch.close()
        captured.close()
    report = _aggregate(model, per_iter, names)
    report['teacher'] = dict(
        checkpoint_loaded=teacher_loaded,
        checkpoint_missing=len(missing),
        checkpoint_missing_keys=missing[:20],
        checkpoint_unset=_unset_teacher_ckpts(cfg),
        forward=_teacher_forward(model),
        eval=bool(getattr(model, 'teacher_eval', False)),
        trainable=bool(getattr(model, 'teacher_trainable', False)),
        bn_changed=bn_changed,
        active_dropout=dropout)
    report.update(
        offline=offline,
        random_weights=random_weights,
        config=cfg.filename,
        algorithm=type(model).__name__,
        distiller=type(distiller).__name__,
        data=(f'generated {size[0]}x{size[1]}'
              if fake_data else 'train_dataloader'),
        batch_size=batch_sizes[0],
        checkpoint=checkpoint,
        iters=iters,
        device=device,
        seed=seed)
    report['warnings'] = diagnose(report, model)
    return report


def _unset_teacher_ckpts(cfg: Config) -> List[str]:
    """The ``model.teacher_ckpts[i]`` of a ``MultiTeacherDistill`` that are
    not set (empty for other algorithms)."""
    teachers = cfg.model.get('teachers')
    if not isinstance(teachers, (list, tuple)):
        return []
    paths = cfg.model.get('teacher_ckpts') or [None] * len(teachers)
    return [f'model.teacher_ckpts[{i}]' for i, p in enumerate(paths) if not p]


def _check_modules(model: nn.Module, replaced: List[Dict[str, Any]]) -> None:
    """Name, for each replaced weight, the nearest module the algorithm
    really has (a config key may name a module only its builder knows)."""
    names = {name for name, _ in model.named_modules()}
    for entry in replaced:
        module = entry['module']
        while module and module not in names:
            module = module.rpartition('.')[0]
        entry['module'] = module or None


def _set_shares(record: Dict[str, Any]) -> None:
    """Each loss's gradient norm over the sum of the norms of all losses
    that train the student (MMEngine sums only the logged values whose
    name contains "loss"; the others get no share)."""
    rows = [(name, r) for g in ('distill', 'task')
            for name, r in record[g].items()]
    summed = [(name, r) for name, r in rows if 'loss' in name]
    total = sum(r['grad_norm'] for _, r in summed
                if math.isfinite(r['grad_norm']))
    for name, r in rows:
        if 'loss' not in name or total <= 0:
            r['grad_share'] = None
        elif math.isfinite(r['grad_norm']):
            r['grad_share'] = r['grad_norm'] / total
        else:
            r['grad_share'] = 0.0


def _describe_inputs(distiller: nn.Module, name: str,
                     inputs: Dict[str, Any]) -> Dict[str, Any]:
    """Stats of a loss's captured inputs, by side, and their cosine."""
    mapping = distiller.loss_forward_mappings[name]
    sides: Dict[str, List[Tuple[str, Any]]] = dict(student=[], teacher=[])
    for key, value in inputs.items():
        spec = mapping.get(key)
        if not isinstance(spec, dict) or not _tensors(value):
            continue
        side = 'student' if spec.get('from_student') else 'teacher'
        sides[side].append((key, value))
    out: Dict[str, Any] = dict(student=None, teacher=None, cosine=None)
    for side, found in sides.items():
        if found:
            key, value = found[0]
            out[side] = dict(arg=key, **tensor_stats(value))
    if sides['student'] and sides['teacher']:
        out['cosine'] = cosine_similarity(sides['student'][0][1],
                                          sides['teacher'][0][1])
    return out


def _aggregate(model: nn.Module, per_iter: List[Dict[str, Any]],
               names: List[str]) -> Dict[str, Any]:
    """Means over the steps (and the per-step values)."""
    distiller = model.distiller
    log_names = getattr(distiller, 'log_names', {})
    losses, task = {}, {}
    for name in names:
        rows = [r['distill'][name] for r in per_iter if name in r['distill']]
        if not rows:
            continue
        entry = _mean_row(rows)
        module = distiller.distill_losses[name]
        entry['type'] = type(module).__name__
        entry['weight_key'] = _weight_key(module)
        entry['loss_weight'] = getattr(module, entry['weight_key'], None) \
            if entry['weight_key'] else None
        for side in ('student', 'teacher'):
            stats = [r['inputs'][name][side] for r in per_iter]
            entry[side] = _mean_stats([s for s in stats if s])
        cosines = [
            r['inputs'][name]['cosine'] for r in per_iter
            if r['inputs'][name]['cosine'] is not None
        ]
        entry['cosine'] = _mean(cosines) if cosines else None
        if name in log_names:
            prefix = f'akd.{log_names[name]}.'
            keys = sorted(
                (k for k in per_iter[0]['akd'] if k.startswith(prefix)),
                key=lambda k: (len(k), k))
            weights = [k for k in keys if k[len(prefix):][1:].isdigit()]
            entry['akd'] = dict(
                weights=[
                    _mean([r['akd'][k] for r in per_iter]) for k in weights
                ],
                uncertainty=_mean([r['akd'][prefix + 'u'] for r in per_iter]),
                wmax_over_wmin=_mean(
                    [r['akd'][prefix + 'wmax_over_wmin'] for r in per_iter]),
                normalize=getattr(distiller, 'normalize', None))
        losses[name] = entry
    for name in per_iter[0]['task']:
        task[name] = _mean_row(
            [r['task'][name] for r in per_iter if name in r['task']])
    return dict(losses=losses, task_losses=task)


def _weight_key(module: nn.Module) -> Optional[str]:
    """The argument that scales a loss (``loss_weight``, or MGD's
    ``alpha_mgd``), if it has one."""
    for key in ('loss_weight', 'alpha_mgd'):
        if isinstance(getattr(module, key, None), (int, float)):
            return key
    return None


def _mean_row(rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    shares = [r['grad_share'] for r in rows if r['grad_share'] is not None]
    return dict(
        value=_mean([r['value'] for r in rows]),
        values=[r['value'] for r in rows],
        grad_norm=_mean([r['grad_norm'] for r in rows]),
        grad_norms=[r['grad_norm'] for r in rows],
        grad_share=_mean(shares) if shares else None)


def _mean_stats(stats: List[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    if not stats:
        return None
    return dict(
        arg=stats[-1]['arg'],
        shape=stats[-1]['shape'],
        mean=_mean([s['mean'] for s in stats]),
        std=_mean([s['std'] for s in stats]),
        finite=all(s['finite'] for s in stats))


# ---------------------------------------------------------------------------
# warnings
# ---------------------------------------------------------------------------
def _warn(loss: Optional[str], kind: str, message: str) -> Dict[str, Any]:
    return dict(loss=loss, kind=kind, message=message)


def _normalised(module: nn.Module) -> bool:
    """Whether a loss normalises both inputs itself."""
    name = type(module).__name__
    return name in _NORMALISING_LOSSES or (name == 'L2Loss' and bool(
        getattr(module, 'normalize', False)))


def _one_by_one(stats: Optional[Dict[str, Any]]) -> bool:
    shapes = (stats or {}).get('shape') or []
    shapes = shapes if shapes and isinstance(shapes[0], list) else [shapes]
    return any(len(s) == 4 and s[2] * s[3] == 1 for s in shapes)


def diagnose(report: Dict[str, Any],
             model: Optional[nn.Module] = None) -> List[Dict[str, Any]]:
    """The warnings a report calls for, each naming the loss (or None) and
    the config key to change.

    Args:
        report (dict): What :func:`analyze_distill` measured.
        model (nn.Module, optional): The algorithm, for the loss modules.

    Returns:
        list[dict]: ``loss``, ``kind`` (one of :data:`WARNING_KINDS`) and
        ``message``, in the order of :data:`WARNING_KINDS` per loss.
    """
    warnings: List[Dict[str, Any]] = []
    task = report['task_losses']
    task_vary = any(
        max(r['values']) - min(r['values']) > CONSTANT_RTOL *
        max(abs(v) for v in r['values']) for r in task.values())
    task_share = sum(r['grad_share'] or 0.0 for r in task.values())
    modules = model.distiller.distill_losses if model is not None else {}
    untrained = '' if report.get('checkpoint') else (
        ' The student is as initialised (no --checkpoint): its scale may '
        'grow in training (logits start near 0); analyse a checkpoint of '
        'a short run to see whether the gap stays.')
    for name, r in report['losses'].items():
        key = f'model.distiller.distill_losses.{name}'
        mapping = f'model.distiller.loss_forward_mappings.{name}'
        values = r['values']
        if 'loss' not in name:
            warnings.append(
                _warn(
                    name, 'not_summed',
                    f'{name} is logged but never trained: MMEngine adds to '
                    'the total loss only the logged values whose name '
                    f'contains "loss"; rename {key} and {mapping} (e.g. '
                    f'to loss_{name}).'))
        finite = all(map(math.isfinite, values + r['grad_norms']))
        if not finite:
            bad = [i + 1 for i, v in enumerate(values) if not math.isfinite(v)]
            inputs = [
                side for side in ('student', 'teacher')
                if r[side] and not r[side]['finite']
            ]
            where = (f'its {" and ".join(inputs)} input holds NaN or Inf '
                     '(a diverged model or a broken checkpoint)'
                     if inputs else 'its inputs are finite, so the loss '
                     'itself overflows or divides by zero (e.g. tau=0)')
            warnings.append(
                _warn(
                    name, 'nonfinite', f'{name} is NaN or Inf at step(s) '
                    f'{bad or "(gradient only)"}: {where}; check {key}.'))
            continue
        zero = all(abs(v) <= ZERO for v in values)
        if zero:
            hint = ''
            if _one_by_one(r['student']) or _one_by_one(r['teacher']):
                hint = (' It compares 1x1 maps (e.g. ChannelWiseDivergence '
                        'over P7 of a 5-level FPN at this input size: a '
                        'softmax over one position is 1 on both sides); '
                        'analyse at the training size (--size) or leave '
                        'that level out.')
            warnings.append(
                _warn(
                    name, 'zero_loss',
                    f'{name} is 0 at every step, so it teaches nothing.'
                    f'{hint} Check {mapping} and {key}.'))
        elif len(values) > 1 and task_vary and (max(values) - min(values)
                                                <= CONSTANT_RTOL *
                                                max(abs(v) for v in values)):
            warnings.append(
                _warn(
                    name, 'constant_loss',
                    f'{name} is {values[0]:.6g} at every step while the '
                    'task losses change with the batch: it does not depend '
                    'on the input (e.g. it compares parameters, or records '
                    f'that ignore the image); check the recorders in '
                    f'{mapping}.'))
        if not zero and r['grad_norm'] == 0:
            warnings.append(
                _warn(
                    name, 'no_gradient',
                    f'{name} sends no gradient into the student: its '
                    'student input is not connected to the student\'s '
                    'parameters (a teacher record mapped as the student '
                    'one, a detached or input-only recorder); check '
                    f'from_student and the recorders in {mapping}.'))
        share = r['grad_share']
        weight = f'{key}.{r["weight_key"]} (now {r["loss_weight"]:g})' \
            if r.get('weight_key') else f'its weight in {key}'
        if share is not None and task and task_share > 0 and \
                share > SHARE_MAX:
            warnings.append(
                _warn(
                    name, 'dominant_loss',
                    f'{name} has {share:.1%} of the student\'s gradient '
                    f'(task losses {task_share:.1%}): it drowns the task '
                    f'losses; lower {weight}.'))
        elif share is not None and 0 < share < SHARE_MIN and not zero:
            warnings.append(
                _warn(
                    name, 'negligible_loss',
                    f'{name} has {share:.2%} of the student\'s gradient: the '
                    f'task losses drown it; raise {weight}.'))
        s, t = r['student'], r['teacher']
        module = modules[name] if name in modules else None
        if s and t and not (module is not None and _normalised(module)):
            small, large = sorted((s['std'], t['std']))
            if large > 0 and (small == 0 or large / small > SCALE_RATIO):
                ratio = large / small if small else float('inf')
                warnings.append(
                    _warn(
                        name, 'scale_mismatch',
                        f'{name} compares a student input with std '
                        f'{s["std"]:.3g} and a teacher input with std '
                        f'{t["std"]:.3g} ({ratio:.3g}x apart) without '
                        'normalising them; standardise them '
                        '(AvatarDistiller avatars.normalize=True, or a '
                        'normalising loss such as PKDLoss) or add a '
                        f'connector in {mapping}.{untrained}'))
    teacher = report['teacher']
    algorithm = report.get('algorithm', '')
    eval_hint = ('model.teacher_eval=True' if algorithm
                 in ('FlexibleTeacherDistill', 'MultiTeacherDistill') else
                 "model.type='FlexibleTeacherDistill' (mmakd) with "
                 'model.teacher_eval=True')
    multi = algorithm == 'MultiTeacherDistill'
    ckpt_key = 'model.teacher_ckpts[i]' if multi else 'model.teacher_ckpt'
    offline = [
        r['key'] for r in report.get('random_weights') or []
        if (r.get('module') or '').startswith(('teacher', 'other_teachers'))
    ]
    offline_note = (f' --offline left out {", ".join(offline)}: the '
                    'teacher\'s weights are random, so its records and the '
                    'losses describe an untrained teacher.' if offline else '')
    if not teacher['checkpoint_loaded']:
        unset = teacher.get('checkpoint_unset') or []
        if multi and unset:
            message = (
                f'No checkpoint was loaded for {len(unset)} of the teachers '
                f'({", ".join(unset)} not set, nor --checkpoint): they have '
                'random or only ImageNet-initialised weights and have '
                f'nothing to teach; set {", ".join(unset)}.')
        else:
            message = (
                f'No teacher checkpoint was loaded ({ckpt_key} is not set, '
                'nor model.teacher.pretrained, nor --checkpoint): the '
                'teacher has random or only ImageNet-initialised weights '
                f'and has nothing to teach; set {ckpt_key}.')
        warnings.append(
            _warn(None, 'teacher_no_checkpoint', message + offline_note))
    elif teacher.get('checkpoint_missing'):
        example = teacher['checkpoint_missing_keys'][0]
        warnings.append(
            _warn(
                None, 'teacher_no_checkpoint',
                f'{ckpt_key} lacks {teacher["checkpoint_missing"]} of '
                f'the teacher\'s tensors (e.g. {example}), or holds them with '
                'other shapes: they were left as initialised (MMRazor loads '
                'teacher checkpoints non-strictly); check that '
                f'{ckpt_key} belongs to '
                f'{"model.teachers[i]" if multi else "model.teacher"}.'))
    if teacher['bn_changed'] and not teacher['trainable']:
        changed = teacher['bn_changed']
        warnings.append(
            _warn(
                None, 'teacher_bn_updating',
                f'The frozen teacher\'s BatchNorm running statistics change '
                f'in training ({len(changed)} layers, e.g. {changed[0]}): its '
                'records drift from the trained teacher\'s; set '
                f'model.teacher_norm_eval=True, or {eval_hint}.'))
    if teacher['active_dropout'] and not teacher['trainable']:
        layers = teacher['active_dropout']
        warnings.append(
            _warn(
                None, 'teacher_dropout_active',
                f'The teacher\'s dropout {", ".join(layers[:3])} '
                f'{"is" if len(layers) == 1 else "are"} active before its '
                'recorded tensors (the teacher runs in training mode with '
                'frozen BatchNorm, as in MMRazor), so the "vanilla" '
                'teacher is perturbed at every step (e.g. PSPNet\'s '
                f'Dropout2d before conv_seg); set {eval_hint}.'))
    order = {k: i for i, k in enumerate(WARNING_KINDS)}
    return sorted(
        warnings, key=lambda w: (w['loss'] is None, order[w['kind']]))


# ---------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------
def _stats_txt(stats: Optional[Dict[str, Any]]) -> Tuple[str, str]:
    if not stats:
        return '-', '-'
    return (_fmt_shape(stats['shape']),
            f'{stats["mean"]:.3g} ± {stats["std"]:.3g}')


def _share_txt(share: Optional[float]) -> str:
    return '-' if share is None else f'{share:.1%}'


def _loss_cells(r: Dict[str, Any]) -> Dict[str, str]:
    """The formatted cells of one loss row, for both renderings."""
    s_shape, s_stats = _stats_txt(r.get('student'))
    t_shape, t_stats = _stats_txt(r.get('teacher'))
    cosine = r.get('cosine')
    return dict(
        value=f'{r["value"]:.4g}',
        grad_norm=f'{r["grad_norm"]:.4g}',
        share=_share_txt(r['grad_share']),
        student=f'{s_shape}, {s_stats}' if r.get('student') else '',
        teacher=f'{t_shape}, {t_stats}' if r.get('teacher') else '',
        cosine='-' if cosine is None else f'{cosine:.3f}')


def _akd_cells(report: Dict[str, Any]) -> List[Tuple[str, str, str, str]]:
    """(loss, Avatar weights, uncertainty, wmax/wmin) of each AKD loss."""
    return [
        (name, ', '.join(f'{w:.3f}' for w in r['akd']['weights']),
         f'{r["akd"]["uncertainty"]:.3g}', f'{r["akd"]["wmax_over_wmin"]:.3f}')
        for name, r in report['losses'].items() if r.get('akd')
    ]


def _random_txt(entry: Dict[str, Any]) -> Tuple[str, str, str]:
    """(config key, what it would have loaded, random module)."""
    key = entry['key'] + (f' (in {entry["file"]})' if entry['file'] else '')
    return key, entry['was'], entry['module'] or '-'


def _random_lines(report: Dict[str, Any]) -> List[str]:
    """The console's list of the weights ``--offline`` left random."""
    if not report.get('offline'):
        return []
    replaced = report.get('random_weights') or []
    if not replaced:
        return ['--offline: nothing to download, no weight left out', '']
    lines = [
        f'--offline: {len(replaced)} downloaded (or missing) weight(s) left '
        "out; these modules have their initialisers' random weights:"
    ]
    for entry in replaced:
        key, was, module = _random_txt(entry)
        lines.append(f'  {module}: {key} = {was}')
    return lines + ['']


def format_report(report: Dict[str, Any]) -> str:
    """The console table: one row per loss, then Avatars and warnings."""
    lines = [
        f'{report["algorithm"]} + {report["distiller"]}, {report["iters"]} '
        f'step(s) at learning rate 0 on {report["data"]} (batch '
        f'{report["batch_size"]}, {report["device"]}); '
        f'teacher forward \'{report["teacher"]["forward"]}\'', ''
    ]
    head = (f'{"loss":<22}{"value":>11}{"grad norm":>11}{"share":>8}  '
            f'{"student (shape, mean ± std)":<40}'
            f'{"teacher (shape, mean ± std)":<40}{"cos":>6}')
    lines += [head, '-' * len(head)]
    for name, r in report['losses'].items():
        c = _loss_cells(r)
        lines.append(f'{name:<22}{c["value"]:>11}{c["grad_norm"]:>11}'
                     f'{c["share"]:>8}  {c["student"]:<40}{c["teacher"]:<40}'
                     f'{c["cosine"]:>6}')
    for name, r in report['task_losses'].items():
        c = _loss_cells(r)
        lines.append(f'{"task: " + name:<22}{c["value"]:>11}'
                     f'{c["grad_norm"]:>11}{c["share"]:>8}')
    for name, weights, u, spread in _akd_cells(report):
        lines.append(f'AKD {name}: weights [{weights}], uncertainty {u}, '
                     f'wmax/wmin {spread} (teacher column: Avatar 1 as the '
                     'loss sees it)')
    lines.append('')
    lines += _random_lines(report)
    if report['warnings']:
        lines.append(f'{len(report["warnings"])} warning(s):')
        for w in report['warnings']:
            lines.append(f'  [{w["kind"]}] {w["message"]}')
    else:
        lines.append('no warnings')
    return '\n'.join(lines)


def markdown_report(report: Dict[str, Any],
                    image: Optional[str] = None) -> str:
    """The report as Markdown (with the gradient-share chart if given)."""
    t = report['teacher']
    lines = [
        '# Distillation report', '',
        f'`{report["config"]}`: {report["algorithm"]} with '
        f'{report["distiller"]}, {report["iters"]} step(s) at learning rate '
        f'0 on {report["data"]} (batch {report["batch_size"]}, '
        f'{report["device"]}). '
        f"Teacher forward '{t['forward']}', teacher checkpoint "
        f'{"loaded" if t["checkpoint_loaded"] else "NOT loaded"}; ' +
        (f'weights from `{report["checkpoint"]}`.'
         if report.get('checkpoint') else 'student as initialised.'), '',
        '| loss | type | value | grad norm | share of the student\'s '
        'gradient | student (shape, mean ± std) | teacher (shape, mean ± '
        'std) | cosine |', '|---|---|---|---|---|---|---|---|'
    ]
    for name, r in report['losses'].items():
        c = _loss_cells(r)
        lines.append(f'| {name} | {r["type"]} | {c["value"]} | '
                     f'{c["grad_norm"]} | {c["share"]} | {c["student"]} | '
                     f'{c["teacher"]} | {c["cosine"]} |')
    for name, r in report['task_losses'].items():
        c = _loss_cells(r)
        lines.append(f'| task: {name} | | {c["value"]} | {c["grad_norm"]} '
                     f'| {c["share"]} | | | |')
    akd = _akd_cells(report)
    if akd:
        lines += [
            '', '| AKD loss | Avatar weights | uncertainty | wmax / wmin |',
            '|---|---|---|---|'
        ]
        lines += [f'| {" | ".join(row)} |' for row in akd]
        lines += [
            '', 'For AKD losses the teacher column describes the first '
            'Avatar as the loss sees it (after the teacher connector and '
            '`avatars.normalize`).'
        ]
    if image:
        lines += ['', f'![gradient shares]({image})']
    if report.get('offline'):
        lines += ['', '## Random weights (--offline)', '']
        if report.get('random_weights'):
            lines += [
                'Downloaded (or missing) weights left out, each module '
                'keeping its own initialisers\' random weights:', '',
                '| module | config key | would have loaded |', '|---|---|---|'
            ]
            lines += [
                f'| {e["module"] or "-"} | `{e["key"]}`' +
                (f' (in {e["file"]})' if e['file'] else '') +
                f' | {e["was"]} |' for e in report['random_weights']
            ]
        else:
            lines.append('Nothing to download: no weight left out.')
    lines += ['', '## Warnings', '']
    if report['warnings']:
        lines += [
            f'- **{w["kind"]}**' + (f' (`{w["loss"]}`)' if w['loss'] else '') +
            f': {w["message"]}' for w in report['warnings']
        ]
    else:
        lines.append('None.')
    return '\n'.join(lines) + '\n'


def plot_grad_shares(report: Dict[str, Any], path: str) -> None:
    """A horizontal bar chart of every loss's share of the student's
    gradient, distillation and task losses in two colours, with the
    :data:`SHARE_MIN` and :data:`SHARE_MAX` lines; a warned loss is drawn
    with a red edge and its warning kinds beside its bar."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    rows = [(n, r['grad_share'] or 0.0, 'distill')
            for n, r in report['losses'].items()]
    rows += [(f'task: {n}', r['grad_share'] or 0.0, 'task')
             for n, r in report['task_losses'].items()]
    flagged: Dict[str, List[str]] = {}
    for w in report['warnings']:
        if w['loss']:
            flagged.setdefault(w['loss'], []).append(w['kind'])
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.9))
    colours = dict(distill='tab:blue', task='tab:gray')
    ys = list(range(len(rows)))[::-1]
    ax.barh(
        ys, [r[1] * 100 for r in rows],
        color=[colours[r[2]] for r in rows],
        edgecolor=['tab:red' if r[0] in flagged else 'none' for r in rows],
        linewidth=2)
    ax.set_yticks(ys)
    ax.set_yticklabels([r[0] for r in rows])
    for y, (name, share, _) in zip(ys, rows):
        kinds = ', '.join(flagged.get(name, []))
        ax.text(
            share * 100 + 0.5,
            y,
            f'{share:.1%}' + (f'  {kinds}' if kinds else ''),
            va='center',
            fontsize=8,
            color='tab:red' if kinds else 'black')
    ax.axvline(
        SHARE_MIN * 100,
        color='tab:orange',
        linestyle='--',
        linewidth=1,
        label=f'{SHARE_MIN:.0%}')
    ax.axvline(
        SHARE_MAX * 100,
        color='tab:red',
        linestyle='--',
        linewidth=1,
        label=f'{SHARE_MAX:.0%}')
    ax.set_xlim(0, 105)
    ax.set_xlabel("share of the student's gradient (%): the loss's gradient "
                  "norm / the sum of all losses' norms")
    config = os.path.basename(str(report.get('config', '')))
    ax.set_title(
        f'{config}\n{report["algorithm"]} + {report["distiller"]}, '
        f'{report["data"]}, {report["iters"]} steps at learning rate 0\n'
        'blue: distillation, grey: task, red: warned',
        fontsize=9)
    ax.legend(loc='lower right', fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
