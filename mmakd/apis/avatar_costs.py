# Copyright (c) mmakd contributors. All rights reserved.
"""Where an AKD loss spends its time: drawing the Avatars, their weights,
and the loss fused or per Avatar, timed side by side.

AKD ("Avatar Knowledge Distillation", Zhang et al., ACM MM 2023,
https://arxiv.org/abs/2305.02722) adds to a distillation step, per AKD
loss: one random draw of ``K`` Avatars, their channel statistics (for the
uncertainty weights) and the loss against them. This module times those
parts on random ReLU feature maps of given shapes (synthetic inputs: the
costs depend on the shapes, not on the values), with the distiller's own
functions: :meth:`~mmakd.models.BaseAvatarPerturbation.draw`,
:func:`~mmakd.models.avatar_uncertainty` and
:func:`~mmakd.models.avatar_weights`, per-channel standardisation of the
student and of each Avatar (``normalize=True``), and the loss either fused
(:meth:`~mmakd.models.avatars.fusion.LossFusion.fused_loss`) or once per
Avatar, forward and backward; ``teacher_only`` is the same loss against
the teacher, what a step without Avatars computes.
"""
import statistics
import time
from typing import Any, Dict, List, Sequence, Tuple

import torch

from mmakd.models.avatars import (avatar_uncertainty, avatar_weights,
                                  build_perturbation, standardize)
from mmakd.models.avatars.fusion import fusion_for
from mmakd.registry import MODELS

__all__ = ['avatar_costs', 'PARTS']

#: The timed parts, in the order of a step.
PARTS = ('draw', 'weights', 'fused_loss', 'loop_loss', 'teacher_only')


def _inputs(shapes: Sequence[Tuple[int, ...]], generator: torch.Generator):
    teachers = [torch.randn(s, generator=generator).relu_() for s in shapes]
    students = [
        torch.randn(s, generator=generator).requires_grad_() for s in shapes
    ]
    return teachers, students


def avatar_costs(shapes: Sequence[Tuple[int, ...]],
                 num_avatars: Sequence[int],
                 loss: Dict[str, Any],
                 perturbation: Dict[str, Any],
                 iters: int = 20,
                 warmup: int = 2,
                 seed: int = 0,
                 progress: bool = True) -> Dict[str, Any]:
    """Median milliseconds of each part of an AKD loss, per ``K``.

    Every shape is one AKD loss (e.g. one FPN level with MMRazor's CWD
    recipe); the parts of all of them add up in each timing. Rounds
    interleave the ``K`` values and the parts.

    Args:
        shapes (Sequence[tuple]): Teacher/student shapes ``(N, C, H, W)``.
        num_avatars (Sequence[int]): The ``K`` values.
        loss (dict): The base loss config, e.g.
            ``dict(type='ChannelWiseDivergence', tau=1, loss_weight=10)``;
            it must have a fused form.
        perturbation (dict): E.g. ``dict(type='AvatarDropout', p=0.1)``
            (its ``num_avatars`` is set per ``K``).
        iters (int): Timed rounds. Defaults to 20.
        warmup (int): Untimed rounds first. Defaults to 2.
        seed (int): Seed of the inputs and the draws. Defaults to 0.
        progress (bool): Print a line per round. Defaults to True.

    Returns:
        dict: ``{K: {part: median ms}}`` under ``'ms'``, and the settings.
    """
    loss_module = MODELS.build(dict(loss, _scope_='mmrazor'))
    fusion, why = fusion_for(loss_module)
    if fusion is None:
        raise ValueError(f'{loss["type"]} has no fused form: {why}')
    generator = torch.Generator().manual_seed(seed)
    teachers, students = _inputs(shapes, generator)
    modules = {
        k:
        build_perturbation(dict(perturbation, num_avatars=k), 'perturbation')
        for k in num_avatars
    }

    def parts(k: int) -> Dict[str, float]:
        times = {}
        t0 = time.perf_counter()
        draws = [modules[k].draw(t, generator=generator) for t in teachers]
        t1 = time.perf_counter()
        moments, weights = [], []
        for t, d in zip(teachers, draws):
            u, (mean, var) = avatar_uncertainty(t, d, return_moments=True)
            weights.append(avatar_weights(u))
            moments.append((mean, var))
        t2 = time.perf_counter()
        times['draw'], times['weights'] = (t1 - t0) * 1e3, (t2 - t1) * 1e3
        for part in ('fused_loss', 'loop_loss', 'teacher_only'):
            start = time.perf_counter()
            total = 0.
            for s, t, d, w, (mean, var) in zip(students, teachers, draws,
                                               weights, moments):
                s_std = standardize(s)
                if part == 'fused_loss':
                    avatars = (
                        standardize(d[i], moments=(mean[i], var[i]))
                        for i in range(k))
                    total = total + fusion.fused_loss(s_std, avatars, w)
                elif part == 'loop_loss':
                    for i in range(k):
                        total = total + w[i] * loss_module(
                            s_std, standardize(d[i]))
                else:
                    total = total + loss_module(s_std, standardize(t))
            total.backward()
            times[part] = (time.perf_counter() - start) * 1e3
        return times

    samples: Dict[int, Dict[str, List[float]]] = {
        k: {
            p: []
            for p in PARTS
        }
        for k in num_avatars
    }
    for r in range(warmup + iters):
        order = list(num_avatars)[r % len(num_avatars):] + \
            list(num_avatars)[:r % len(num_avatars)]
        for k in order:
            times = parts(k)
            if r >= warmup:
                for p in PARTS:
                    samples[k][p].append(times[p])
        if progress:
            print(
                f'[avatar_costs] round {r + 1}/{warmup + iters}'
                f'{" (warm-up)" if r < warmup else ""}',
                flush=True)
    return dict(
        shapes=[list(s) for s in shapes],
        loss=loss,
        perturbation=perturbation,
        iters=iters,
        threads=torch.get_num_threads(),
        ms={
            k: {
                p: statistics.median(v)
                for p, v in samples[k].items()
            }
            for k in num_avatars
        })


def markdown(result: Dict[str, Any]) -> str:
    """The result as a Markdown table, one row per ``K``."""
    lines = [
        '| K | draw ms | weights ms | fused loss ms | loop loss ms | '
        'teacher-only loss ms | AKD extra, fused | AKD extra, loop |',
        '|---|---|---|---|---|---|---|---|'
    ]
    for k, ms in result['ms'].items():
        base = ms['draw'] + ms['weights'] - ms['teacher_only']
        lines.append(f'| {k} | {ms["draw"]:.2f} | {ms["weights"]:.2f} | '
                     f'{ms["fused_loss"]:.2f} | {ms["loop_loss"]:.2f} | '
                     f'{ms["teacher_only"]:.2f} | '
                     f'{base + ms["fused_loss"]:.2f} | '
                     f'{base + ms["loop_loss"]:.2f} |')
    return '\n'.join(lines) + '\n'
