# Copyright (c) mmakd contributors. All rights reserved.
"""Time every case of a distillation config, interleaved, and report them.

Rounds interleave the cases (the order rotated each round, so that no case
always runs first) after untimed warm-up rounds; then each case runs a few
more steps for its peak memory and one for its device-to-host
synchronisations (``aten::_local_scalar_dense`` calls, the same on CPU and
GPU; see :class:`mmakd.testing.CountHostSyncs`).
"""
import copy
import os
import platform
import statistics
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.config import Config

from mmakd.testing import CountHostSyncs, batch_for_model
from mmakd.utils import load_config
from .cases import CASES, _task, _teacher_forward, build_cases
from .targets import check_targets, ensemble_vs_avatars
from .timing import _mmap_large_allocations, _timed, step_peak_mb


def _say(text: str) -> None:
    """Print a progress line at once."""
    print(text, flush=True)


def _silent(text: str) -> None:
    """Print nothing."""


def _stats(values: List[float]) -> Dict[str, float]:
    """Median, interquartile range and count of step times in ms."""
    q = statistics.quantiles(values, n=4) if len(values) > 1 else \
        [values[0]] * 3
    return dict(
        step_ms_median=statistics.median(values),
        step_ms_iqr=q[2] - q[0],
        n=len(values))


def _default_size(cfg: Config, device: str) -> Tuple[int, int]:
    """128x256 on CPU; on CUDA 512x1024 (segmentation) or 800x1333."""
    if device == 'cpu':
        return (128, 256)
    return (512, 1024) if _task(cfg) == 'seg' else (800, 1333)


def run_benchmark(config: str,
                  cases: Sequence[str] = CASES,
                  iters: int = 10,
                  warmup: int = 2,
                  device: str = 'cpu',
                  size: Optional[Sequence[int]] = None,
                  batch_size: int = 2,
                  threads: Optional[int] = None,
                  mem_steps: int = 3,
                  cfg_options: Optional[Dict[str, Any]] = None,
                  command: Optional[str] = None,
                  progress: bool = True) -> Dict[str, Any]:
    """Build, time and compare the benchmark's cases of one config.

    Args:
        config (str): A distillation config (a ``ConfigurableDistiller``
            config or its AKD twin).
        cases (Sequence[str]): The cases, from :data:`CASES`. Defaults to
            all of them.
        iters (int): Timed rounds. Defaults to 10.
        warmup (int): Untimed rounds first. Defaults to 2.
        device (str): ``'cpu'`` or ``'cuda'``. Defaults to ``'cpu'``.
        size (Sequence[int], optional): The input ``(H, W)``. Defaults to
            128x256 on CPU, 512x1024 (segmentation) or 800x1333 on CUDA.
        batch_size (int): Defaults to 2.
        threads (int, optional): torch CPU threads. Defaults to torch's.
        mem_steps (int): Steps per case for peak memory (median).
            Defaults to 3.
        cfg_options (dict, optional): Overrides merged into the config.
        command (str, optional): The command recorded in the results.
            Defaults to ``' '.join(sys.argv)``.
        progress (bool): Print the settings, a line per round and the
            memory phase. Defaults to True.

    Returns:
        dict: ``config``, ``size``, ``batch_size``, ``iters``, ``warmup``,
        ``base`` (its class), ``teacher_forward`` (the teacher's mode),
        ``machine``, ``command``, ``cases`` (per case ``step_ms_median``,
        ``step_ms_iqr``, ``n``, ``peak_mem_mb``, ``host_syncs`` and the
        ratios to ``base``, ``ours`` and ``lower_bound``; also
        ``teacher_forward`` and ``lower_bound``), ``ensemble_vs_avatars``
        and ``targets``.
    """
    say = _say if progress else _silent
    if threads:
        torch.set_num_threads(threads)
    cfg = load_config(config, cfg_options)
    size = tuple(size) if size else _default_size(cfg, device)
    say(f'[benchmark] {config}, input {size[0]}x{size[1]}, batch '
        f'{batch_size}, {device}, {torch.get_num_threads()} threads')
    built, teacher, teacher_mode, base_name, student_model = build_cases(
        cfg, device, size, list(cases))
    batch = batch_for_model(student_model, batch_size, *size, seed=0)
    student = built['student'][0] if 'student' in built else None
    prepared = (student or next(iter(built.values()))[0]).data_preprocessor(
        copy.deepcopy(batch), True)
    times: Dict[str, List[float]] = {name: [] for name in built}
    times['teacher_forward'] = []
    order = list(built) + ['teacher_forward']
    for round_ in range(warmup + iters):
        # rotate the order so that no case always runs first
        shift = round_ % len(order)
        for name in order[shift:] + order[:shift]:
            if name == 'teacher_forward':
                ms = _timed(
                    lambda: _teacher_forward(teacher, teacher_mode, prepared),
                    device)
            else:
                model, optim = built[name]
                ms = _timed(
                    lambda: model.train_step(copy.deepcopy(batch), optim),
                    device)
            if round_ >= warmup:
                times[name].append(ms)
        say(f'[benchmark] round {round_ + 1}/{warmup + iters}'
            f'{" (warm-up)" if round_ < warmup else ""}')

    results: Dict[str, Any] = {n: _stats(v) for n, v in times.items()}
    if 'student' in results:
        results['lower_bound'] = dict(
            step_ms_median=results['student']['step_ms_median'] +
            results['teacher_forward']['step_ms_median'],
            step_ms_iqr=float('nan'),
            n=iters)
    say('[benchmark] peak memory, one step per case ...')
    if device == 'cpu' and not _mmap_large_allocations():
        say('[benchmark] warning: could not set glibc M_MMAP_THRESHOLD; '
            'CPU peak memory may under-count')
    for name, (model, optim) in built.items():
        peaks = [
            step_peak_mb(lambda: model.train_step(copy.deepcopy(batch), optim),
                         device) for _ in range(mem_steps)
        ]
        results[name]['peak_mem_mb'] = statistics.median(peaks)
        with CountHostSyncs() as syncs:
            model.train_step(copy.deepcopy(batch), optim)
        results[name]['host_syncs'] = syncs.count
    refs = {
        k: results[k]['step_ms_median']
        for k in ('base', 'ours', 'lower_bound') if k in results
    }
    for name, r in results.items():
        for ref, value in refs.items():
            r[f'ratio_to_{ref}'] = r['step_ms_median'] / value
        if 'peak_mem_mb' in r and 'base' in results:
            r['mem_ratio_to_base'] = r['peak_mem_mb'] / results['base'][
                'peak_mem_mb']

    machine = dict(
        processor=platform.processor() or platform.machine(),
        cpu_count=os.cpu_count(),
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        device=(torch.cuda.get_device_name() if device == 'cuda' else 'cpu'))
    return dict(
        config=config,
        size=list(size),
        batch_size=batch_size,
        iters=iters,
        warmup=warmup,
        base=base_name,
        teacher_forward=teacher_mode,
        machine=machine,
        command=' '.join(sys.argv) if command is None else command,
        cases=results,
        ensemble_vs_avatars=ensemble_vs_avatars(results),
        targets=check_targets(results, base_name))
