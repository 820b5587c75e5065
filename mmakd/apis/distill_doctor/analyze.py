# Copyright (c) mmakd contributors. All rights reserved.
"""The analysis: training steps at learning rate 0, and their means."""
import copy
import math
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from mmengine.config import Config
from mmengine.runner.utils import set_random_seed
from torch import nn

from ..offline_weights import offline_model_config
from .build import _build, _check_modules, _unset_teacher_ckpts
from .data import _dataloader_batches, _fake_batches, default_fake_size
from .probes import (_grad_norm, _LossInputs, _split_losses, _student_params,
                     _teacher_forward, _TeacherWatch, _tensors,
                     cosine_similarity, tensor_stats)
from .rules import diagnose


def _mean(values: List[float]) -> float:
    return sum(values) / len(values) if values else float('nan')


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
