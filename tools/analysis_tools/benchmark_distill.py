# Copyright (c) mmakd contributors. All rights reserved.
"""What does a distillation step cost, and what do Avatars add to it?

    python tools/analysis_tools/benchmark_distill.py CONFIG \
        [--iters 10] [--warmup 2] [--device cpu|cuda] [--json OUT] \
        [--size H W] [--batch-size 2] [--cfg-options ...]

CONFIG is a distillation config (a ``ConfigurableDistiller`` config or its
AKD twin). From it, with the same random weights and the same batch, the
tool builds and times, interleaved round by round after ``--warmup``
rounds:

- ``student``: the student's own training step, alone;
- ``base``: MMRazor's algorithm with ``ConfigurableDistiller``
  (``FpnTeacherDistill`` when every teacher recorder is in the backbone or
  neck, as MMRazor's FPN configs use, else ``SingleTeacherDistill``);
- ``ours``: mmakd's ``FlexibleTeacherDistill`` with the same distiller;
- ``ours_fused``: the same with ``fuse_teacher_conv_bn=True`` (the frozen
  teacher's BatchNorms folded into its convolutions);
- ``akd_k1``, ``akd_k4``, ``akd_k8``: ``FlexibleTeacherDistill`` with
  ``AvatarDistiller`` and K = 1, 4, 8 (dropout p = 0.1), each loss's
  Avatars fused into one target where the loss allows it (the default,
  ``avatars.fuse='auto'``);
- ``akd_k4_loop``, ``akd_k8_loop``: the same with ``avatars.fuse=False``,
  the base loss computed once per Avatar (before fused targets);
- ``akd_flip``, ``akd_scales_flip``, ``akd_mc4``: Avatars that run the
  teacher: views of the input (original + flip, K = 2; scales 0.75, 1,
  1.25 each with its flip, K = 6) and in-network dropout (p = 0.1 on the
  backbone stages' outputs, K = 4), the teacher batched over its Avatars;
- ``multi_teacher_k2``, ``multi_teacher_k4``: mmakd's
  ``MultiTeacherDistill`` with the same distiller and 2 or 4 copies of the
  teacher (a real ensemble: every teacher runs once per step and their
  records are averaged), so that the cost of K teachers and of K Avatars
  of one teacher (``akd_k4``) are measured side by side;
- ``lower_bound``: the teacher's forward (the shortest one that feeds the
  recorders) plus the student's step, each timed apart and added.

It prints the median step time and its spread (interquartile range), peak
memory, the device-to-host synchronisations of one step (counted as
``aten::_local_scalar_dense`` calls, the same on CPU and GPU; see
:class:`mmakd.testing.CountHostSyncs`), and the ratios to ``base``,
``ours`` and the lower bound, and the step of a real ensemble of K
teachers over that of K Avatars (``ensemble_vs_avatars``); ``--json``
writes them under
``cases.<name>.step_ms_median``, ``cases.<name>.step_ms_iqr``,
``cases.<name>.peak_mem_mb`` and ``cases.<name>.host_syncs``.

The optimizer step runs in full but at learning rate 0, so the weights
stay as built: each round times the same computation, and a case cannot
diverge on random weights.

Peak memory is the step's transient peak above the memory held before it
(activations, gradients, optimizer temporaries; the models' weights are
common to all cases and left out): on CUDA from
``torch.cuda.max_memory_allocated``; on CPU by sampling the process's
resident set every 0.5 ms during one step of each case, after telling
glibc to ``mmap`` every allocation of 64 KiB or more, so that a freed
tensor leaves the resident set at once.
"""
import argparse
import copy
import ctypes
import json
import os
import platform
import statistics
import sys
import threading
import time
from functools import partial
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from mmengine.config import DictAction
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope, init_default_scope

REPO = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from mmakd.models.algorithms.flexible_teacher_distill import (  # noqa: E402
    FEAT_PARTS, _within, shortest_forward)
from mmakd.registry import MODELS  # noqa: E402
from mmakd.testing import CountHostSyncs  # noqa: E402
from mmakd.testing import batch_for_model  # noqa: E402
from mmakd.testing import random_weights_overrides  # noqa: E402
from mmakd.utils import load_config  # noqa: E402

CASES = ('student', 'base', 'ours', 'ours_fused', 'akd_k1', 'akd_k4', 'akd_k8',
         'akd_k4_loop', 'akd_k8_loop', 'akd_flip', 'akd_scales_flip',
         'akd_mc4', 'multi_teacher_k2', 'multi_teacher_k4')
#: Avatars that run the teacher, per case.
TEACHER_SOURCES = dict(
    akd_flip=dict(type='TeacherViews', flip=True),
    akd_scales_flip=dict(
        type='TeacherViews', flip=True, scales=(0.75, 1.0, 1.25)),
    akd_mc4=dict(type='TeacherDropout', p=0.1, num_avatars=4))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('--iters', type=int, default=10)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--device', choices=['cpu', 'cuda'], default='cpu')
    parser.add_argument(
        '--size',
        type=int,
        nargs=2,
        default=None,
        metavar=('H', 'W'),
        help='input size (default: 128 256 on CPU, the '
        "config's crop or 800 1333 on CUDA)")
    parser.add_argument('--batch-size', type=int, default=2)
    parser.add_argument(
        '--threads',
        type=int,
        default=None,
        help='torch CPU threads (default: torch default)')
    parser.add_argument('--json', default=None, help='write results here')
    parser.add_argument(
        '--markdown',
        default=None,
        help='write the table and targets as Markdown here')
    parser.add_argument(
        '--cases', nargs='+', default=list(CASES), choices=list(CASES))
    parser.add_argument(
        '--mem-steps',
        type=int,
        default=3,
        help='steps per case for peak memory (median)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args()
    for key in ('iters', 'mem_steps'):
        if getattr(args, key) < 1:
            parser.error(f'--{key.replace("_", "-")} must be >= 1')
    if args.warmup < 0:
        parser.error('--warmup must be >= 0')
    return args


#: (case, reference, what, limit): the targets of a distillation step.
TARGETS = (
    ('akd_k1', 'base', 'step', 1.02),
    ('akd_k4', 'base', 'step', 1.10),
    ('akd_k4', 'base', 'extra peak memory', 1.05),
    ('akd_k4', 'ours', 'step', 1.08),
    ('akd_k8', 'ours', 'step', 1.12),
    ('akd_k8', 'ours', 'extra peak memory', 1.10),
)
#: ``ours`` against MMRazor's algorithm: at least 1.07x faster than
#: ``SingleTeacherDistill``; against ``FpnTeacherDistill``, which runs the
#: same teacher forward (backbone and neck), not slower beyond 1% of timer
#: noise.
OURS_LIMIT = dict(SingleTeacherDistill=1 / 1.07, FpnTeacherDistill=1.01)


def check_targets(results: Dict[str, Any],
                  base: str = 'SingleTeacherDistill') -> List[Dict[str, Any]]:
    """Each target whose cases were measured, with its ratio and verdict.

    Args:
        results (dict): ``cases`` as the tool writes them.
        base (str): The class of the ``base`` case. Defaults to
            ``'SingleTeacherDistill'``.

    Returns:
        list[dict]: ``case``, ``reference``, ``what``, ``limit``, ``ratio``
        and ``met`` for every target in :data:`TARGETS` and for ``ours``
        and ``ours_fused``.
    """
    out = []
    targets = TARGETS + tuple((ours, 'base', 'step', OURS_LIMIT[base])
                              for ours in ('ours', 'ours_fused'))
    for case, ref, what, limit in targets:
        if case not in results or ref not in results:
            continue
        key = 'peak_mem_mb' if 'memory' in what else 'step_ms_median'
        if key not in results[case] or key not in results[ref]:
            continue
        ratio = results[case][key] / results[ref][key]
        out.append(
            dict(
                case=case,
                reference=ref,
                what=what,
                limit=limit,
                ratio=ratio,
                met=bool(ratio <= limit)))
    return out


def ensemble_vs_avatars(results: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The step time of K real teachers over that of K Avatars, for every
    K measured both ways."""
    out = []
    for k in (2, 4, 8):
        ens, ava = f'multi_teacher_k{k}', f'akd_k{k}'
        if ens in results and ava in results:
            out.append(
                dict(
                    k=k,
                    ensemble=ens,
                    avatars=ava,
                    ratio=results[ens]['step_ms_median'] /
                    results[ava]['step_ms_median']))
    return out


def _task(cfg) -> str:
    scope = cfg.get('default_scope', '')
    return 'seg' if scope == 'mmseg' else 'det'


def _plain_distiller(distiller: Dict[str, Any]) -> Dict[str, Any]:
    distiller = copy.deepcopy(distiller)
    distiller.pop('avatars', None)
    distiller['type'] = 'ConfigurableDistiller'
    return distiller


def build_cases(cfg, device: str, size: Tuple[int, int], names: List[str]):
    """Every case's model and optimizer wrapper, same weights."""
    from mmrazor.models import FpnTeacherDistill, SingleTeacherDistill
    cfg.merge_from_dict(random_weights_overrides(cfg))
    init_default_scope(cfg.get('default_scope', 'mmrazor'))
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg['distiller'] = _plain_distiller(model_cfg['distiller'])
    torch.manual_seed(0)
    reference = MODELS.build(copy.deepcopy(model_cfg))
    student, teacher = reference.student, reference.teacher
    sources = [
        r.source
        for r in reference.distiller.teacher_recorders.recorders.values()
        if hasattr(r, 'source')
    ]
    fpn_only = bool(sources) and all(_within(s, FEAT_PARTS) for s in sources)
    base_cls = FpnTeacherDistill if fpn_only else SingleTeacherDistill
    distiller_cfg = model_cfg['distiller']
    if hasattr(student.data_preprocessor, 'size') and \
            student.data_preprocessor.size is not None:
        student.data_preprocessor.size = tuple(size)  # no padding to crop

    def algorithm(kind: str,
                  k: int = 0,
                  fuse: bool = False,
                  loop: bool = False,
                  source: Optional[Dict[str, Any]] = None):
        s, t = copy.deepcopy(student), copy.deepcopy(teacher)
        dist = copy.deepcopy(distiller_cfg)
        with DefaultScope.overwrite_default_scope('mmrazor'):
            if kind == 'base':
                return base_cls(architecture=s, teacher=t, distiller=dist)
            if kind == 'multi':
                return MODELS.build(
                    dict(
                        type='MultiTeacherDistill',
                        architecture=s,
                        teachers=[t] +
                        [copy.deepcopy(teacher) for _ in range(k - 1)],
                        distiller=dist,
                        check_shapes=False))
            if k:
                dist['type'] = 'AvatarDistiller'
                dist['avatars'] = dict(
                    num_avatars=k,
                    perturbation=dict(type='AvatarDropout', p=0.1),
                    fuse=False if loop else 'auto')
            if source:
                dist['type'] = 'AvatarDistiller'
                dist['avatars'] = dict(perturbation=copy.deepcopy(source))
            return MODELS.build(
                dict(
                    type='FlexibleTeacherDistill',
                    architecture=s,
                    teacher=t,
                    distiller=dist,
                    check_shapes=False,
                    fuse_teacher_conv_bn=fuse))

    builders: Dict[str, Callable] = dict(
        student=lambda: copy.deepcopy(student),
        base=lambda: algorithm('base'),
        ours=lambda: algorithm('ours'),
        ours_fused=lambda: algorithm('ours', fuse=True),
        akd_k1=lambda: algorithm('akd', 1),
        akd_k4=lambda: algorithm('akd', 4),
        akd_k8=lambda: algorithm('akd', 8),
        akd_k4_loop=lambda: algorithm('akd', 4, loop=True),
        akd_k8_loop=lambda: algorithm('akd', 8, loop=True),
        **{
            name: partial(algorithm, 'akd', source=source)
            for name, source in TEACHER_SOURCES.items()
        },
        multi_teacher_k2=lambda: algorithm('multi', 2),
        multi_teacher_k4=lambda: algorithm('multi', 4))
    cases = {}
    for name in names:
        model = builders[name]().to(device)
        model.train()
        optim = build_optim_wrapper(model, cfg.optim_wrapper)
        # The optimizer runs in full, at learning rate 0: every round times
        # the same computation, and no case can diverge on random weights.
        for group in optim.optimizer.param_groups:
            group['lr'] = 0.0
        cases[name] = (model, optim)
    teacher_mode = shortest_forward(teacher,
                                    reference.distiller.teacher_recorders)
    lower_teacher = copy.deepcopy(teacher).to(device)
    return cases, lower_teacher, teacher_mode, base_cls.__name__, student


def _sync(device: str) -> None:
    if device == 'cuda':
        torch.cuda.synchronize()


def _timed(fn: Callable, device: str) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return (time.perf_counter() - start) * 1000


def _teacher_forward(teacher, mode: str, data) -> None:
    with torch.no_grad():
        if mode == 'feat':
            teacher.extract_feat(data['inputs'])
        else:
            teacher(
                data['inputs'],
                data['data_samples'],
                mode='tensor' if mode == 'tensor' else 'loss')


_PAGE = os.sysconf('SC_PAGE_SIZE') if hasattr(os, 'sysconf') else 4096


def _rss_bytes() -> int:
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * _PAGE


def _libc():
    try:
        return ctypes.CDLL('libc.so.6')
    except OSError:
        return None


def _mmap_large_allocations() -> bool:
    """Make glibc return freed blocks >= 64 KiB to the OS at once."""
    libc = _libc()
    try:
        return bool(libc and libc.mallopt(-3, 64 * 1024))  # M_MMAP_THRESHOLD
    except AttributeError:
        return False


def _trim() -> None:
    """Give the free memory glibc still holds back to the OS."""
    libc = _libc()
    if libc is not None and hasattr(libc, 'malloc_trim'):
        libc.malloc_trim(0)


class _PeakSampler:
    """Highest resident-set size seen while the block runs."""

    def __init__(self, interval: float = 0.0005) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(self.interval)

    def __enter__(self) -> '_PeakSampler':
        self.peak = _rss_bytes()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())


def step_peak_mb(step: Callable, device: str) -> float:
    """Transient memory of one call of ``step`` above what it started with."""
    if device == 'cuda':
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    _trim()
    before = _rss_bytes()
    with _PeakSampler() as sampler:
        step()
    return (sampler.peak - before) / 2**20


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config, args.cfg_options)
    size = tuple(
        args.size) if args.size else ((128, 256) if args.device == 'cpu' else
                                      ((512, 1024) if _task(cfg) == 'seg' else
                                       (800, 1333)))
    print(
        f'[benchmark] {args.config}, input {size[0]}x{size[1]}, batch '
        f'{args.batch_size}, {args.device}, {torch.get_num_threads()} '
        'threads',
        flush=True)
    cases, teacher, teacher_mode, base_name, student_model = build_cases(
        cfg, args.device, size, args.cases)
    batch = batch_for_model(student_model, args.batch_size, *size, seed=0)
    student = cases['student'][0] if 'student' in cases else None
    prepared = (student or next(iter(cases.values()))[0]).data_preprocessor(
        copy.deepcopy(batch), True)
    times: Dict[str, List[float]] = {name: [] for name in cases}
    times['teacher_forward'] = []
    order = list(cases) + ['teacher_forward']
    for round_ in range(args.warmup + args.iters):
        # rotate the order so that no case always runs first
        shift = round_ % len(order)
        for name in order[shift:] + order[:shift]:
            if name == 'teacher_forward':
                ms = _timed(
                    lambda: _teacher_forward(teacher, teacher_mode, prepared),
                    args.device)
            else:
                model, optim = cases[name]
                ms = _timed(
                    lambda: model.train_step(copy.deepcopy(batch), optim),
                    args.device)
            if round_ >= args.warmup:
                times[name].append(ms)
        print(
            f'[benchmark] round {round_ + 1}/{args.warmup + args.iters}'
            f'{" (warm-up)" if round_ < args.warmup else ""}',
            flush=True)

    def stats(values: List[float]) -> Dict[str, float]:
        q = statistics.quantiles(values, n=4) if len(values) > 1 else \
            [values[0]] * 3
        return dict(
            step_ms_median=statistics.median(values),
            step_ms_iqr=q[2] - q[0],
            n=len(values))

    results: Dict[str, Any] = {n: stats(v) for n, v in times.items()}
    if 'student' in results:
        results['lower_bound'] = dict(
            step_ms_median=results['student']['step_ms_median'] +
            results['teacher_forward']['step_ms_median'],
            step_ms_iqr=float('nan'),
            n=args.iters)
    print('[benchmark] peak memory, one step per case ...', flush=True)
    if args.device == 'cpu' and not _mmap_large_allocations():
        print(
            '[benchmark] warning: could not set glibc M_MMAP_THRESHOLD; '
            'CPU peak memory may under-count',
            flush=True)
    for name, (model, optim) in cases.items():
        peaks = [
            step_peak_mb(lambda: model.train_step(copy.deepcopy(batch), optim),
                         args.device) for _ in range(args.mem_steps)
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

    header = (f'{"case":<16}{"median ms":>11}{"IQR ms":>9}{"peak MB":>9}'
              f'{"/base":>8}{"/ours":>8}{"/lower":>8}{"mem/base":>10}'
              f'{"syncs":>7}')
    print()
    print(f'base = {base_name}; ours = FlexibleTeacherDistill (teacher '
          f"forward '{teacher_mode}'); lower bound = teacher forward + "
          'student step')
    print(header)
    for name in list(cases) + ['teacher_forward', 'lower_bound']:
        r = results.get(name)
        if r is None:
            continue

        def fmt(key, spec='.3f'):
            return format(r[key], spec) if key in r else '-'

        print(f'{name:<16}{r["step_ms_median"]:>11.1f}'
              f'{r["step_ms_iqr"]:>9.1f}'
              f'{fmt("peak_mem_mb", ".0f"):>9}{fmt("ratio_to_base"):>8}'
              f'{fmt("ratio_to_ours"):>8}{fmt("ratio_to_lower_bound"):>8}'
              f'{fmt("mem_ratio_to_base"):>10}{fmt("host_syncs", "d"):>7}')
    comparisons = ensemble_vs_avatars(results)
    for c in comparisons:
        print(f"{c['ensemble']} / {c['avatars']}: {c['ratio']:.3f} (the step "
              f"of {c['k']} teachers over that of {c['k']} Avatars of one)")
    targets = check_targets(results, base_name)
    if targets:
        print()
        print('targets:')
    for t in targets:
        print(f"  {t['case']} / {t['reference']} {t['what']}: "
              f"{t['ratio']:.3f} (<= {t['limit']:.3f}) "
              f"{'met' if t['met'] else 'MISSED'}")
    machine = dict(
        processor=platform.processor() or platform.machine(),
        cpu_count=os.cpu_count(),
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        device=(torch.cuda.get_device_name()
                if args.device == 'cuda' else 'cpu'))
    payload = dict(
        config=args.config,
        size=list(size),
        batch_size=args.batch_size,
        iters=args.iters,
        warmup=args.warmup,
        base=base_name,
        teacher_forward=teacher_mode,
        machine=machine,
        command=' '.join(sys.argv),
        cases=results,
        ensemble_vs_avatars=comparisons,
        targets=targets)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(payload, f, indent=2)
        print(f'[benchmark] wrote {args.json}')
    if args.markdown:
        with open(args.markdown, 'w') as f:
            f.write(markdown(payload))
        print(f'[benchmark] wrote {args.markdown}')


def markdown(payload: Dict[str, Any]) -> str:
    """The measured table and targets as Markdown (for the docs)."""
    cases = payload['cases']
    h, w = payload['size']
    m = payload['machine']
    lines = [
        f"`{payload['config']}`, input {h}x{w}, batch "
        f"{payload['batch_size']}, {m['device']} ({m['processor']}, "
        f"{m['threads']} threads, torch {m['torch']}); median of "
        f"{payload['iters']} interleaved steps after {payload['warmup']} "
        f"warm-up rounds. base = {payload['base']}; ours = "
        f"FlexibleTeacherDistill (teacher forward "
        f"'{payload['teacher_forward']}').", '',
        '| case | step ms (median) | IQR ms | peak MB | / base | / ours '
        '| / lower bound | memory / base | host syncs / step |',
        '|---|---|---|---|---|---|---|---|---|'
    ]
    for name in list(CASES) + ['teacher_forward', 'lower_bound']:
        r = cases.get(name)
        if r is None:
            continue

        def fmt(key: str, spec: str = '.3f') -> str:
            value = r.get(key)
            return '-' if value is None or value != value else format(
                value, spec)

        lines.append(
            f"| {name} | {r['step_ms_median']:.1f} | "
            f"{fmt('step_ms_iqr', '.1f')} | {fmt('peak_mem_mb', '.0f')} | "
            f"{fmt('ratio_to_base')} | "
            f"{fmt('ratio_to_ours')} | {fmt('ratio_to_lower_bound')} | "
            f"{fmt('mem_ratio_to_base')} | {fmt('host_syncs', 'd')} |")
    for c in payload.get('ensemble_vs_avatars', []):
        lines += [
            '', f"A real ensemble of {c['k']} teachers against {c['k']} "
            f"Avatars of one: {c['ensemble']} / {c['avatars']} = "
            f"{c['ratio']:.3f} (step time)."
        ]
    lines += ['', '| target | ratio | limit | |', '|---|---|---|---|']
    for t in payload['targets']:
        lines.append(f"| {t['case']} / {t['reference']}, {t['what']} | "
                     f"{t['ratio']:.3f} | <= {t['limit']:.3f} | "
                     f"{'met' if t['met'] else 'MISSED'} |")
    lines += ['', f"Command: `python {payload['command']}`"]
    return '\n'.join(lines) + '\n'


if __name__ == '__main__':
    main()
