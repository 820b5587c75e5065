# Copyright (c) mmakd contributors. All rights reserved.
"""What each step of the CUDA check must have produced. Each check reads
the step's files and output, raises :class:`CheckFailed` naming what is
wrong, or returns a short summary of what it found."""
import json
import math
import os
import os.path as osp
import re
from typing import Any, Dict, List

from mmengine.config import Config

from ..experiment import read_scalars

__all__ = [
    'CheckFailed', 'check_env', 'check_training', 'check_test', 'check_doctor',
    'check_benchmark', 'check_pytest', 'avatar_weights'
]

#: An Avatar weight in the training log: ``distill.akd.<loss>.w<k>``.
WEIGHT_KEY = re.compile(r'^distill\.akd\.(.+)\.w(\d+)$')


class CheckFailed(AssertionError):
    """A step ran but its result is wrong."""


def check_env(info: Dict[str, Any], device: str) -> str:
    """The versions the fresh interpreter imported; with CUDA, a GPU that
    torch sees and mmcv ops compiled with CUDA."""
    if device == 'cuda':
        if not info.get('cuda_available'):
            raise CheckFailed('torch.cuda.is_available() is False')
        if info.get('mmcv_ops_cuda') in (None, 'not available'):
            raise CheckFailed('mmcv ops were compiled without CUDA '
                              f"({info.get('mmcv_ops_cuda')})")
    gpu = f", {info['gpu']}" if info.get('gpu') else ''
    return (f"torch {info['torch']} (CUDA {info['torch_cuda']}{gpu}), mmcv "
            f"{info['mmcv']} ops CUDA {info['mmcv_ops_cuda']}, mmakd "
            f"{info['mmakd']}")


def avatar_weights(record: Dict[str, Any]) -> Dict[str, List[float]]:
    """The Avatar weights of one training record, by loss."""
    weights: Dict[str, Dict[int, float]] = {}
    for key, value in record.items():
        match = WEIGHT_KEY.match(key)
        if match:
            weights.setdefault(match[1], {})[int(match[2])] = value
    return {
        loss: [found[k] for k in sorted(found)]
        for loss, found in weights.items()
    }


def check_training(work_dir: str,
                   iters: int,
                   akd: bool,
                   amp_type: str = '',
                   amp_dtype: str = '') -> str:
    """Every logged training loss finite; with ``akd``, Avatar weights of
    every AKD loss logged, finite, summing to 1; with ``amp_type``, the
    resolved config's optimizer wrapper and dtype."""
    records = [r for r in read_scalars(work_dir) if 'loss' in r]
    if [r['iter'] for r in records] != list(range(1, iters + 1)):
        raise CheckFailed(f'training records of iterations '
                          f"{[r['iter'] for r in records]}, not 1..{iters}")
    for record in records:
        bad = [
            k for k, v in record.items()
            if 'loss' in k and isinstance(v, float) and not math.isfinite(v)
        ]
        if bad:
            raise CheckFailed(f"iteration {record['iter']}: non-finite "
                              f"{', '.join(bad)}")
    last = records[-1]
    summary = f"loss {last['loss']:.4g}"
    if akd:
        weights = avatar_weights(last)
        if not weights:
            raise CheckFailed('no Avatar weights (distill.akd.*.w*) logged')
        for loss, values in weights.items():
            if not all(math.isfinite(v)
                       for v in values) or abs(sum(values) - 1) > 1e-3:
                raise CheckFailed(f'Avatar weights of {loss}: {values}')
        loss, values = sorted(weights.items())[0]
        summary += (f", {len(weights)} AKD losses, weights of {loss}: " +
                    ' '.join(f'{v:.3f}' for v in values))
    if amp_type:
        configs = [
            f for f in sorted(os.listdir(work_dir)) if f.endswith('.py')
        ]
        if not configs:
            raise CheckFailed(f'no dumped config in {work_dir}')
        cfg = Config.fromfile(osp.join(work_dir, configs[-1]))
        wrapper = cfg.optim_wrapper
        if (wrapper.type, wrapper.get('dtype')) != (amp_type, amp_dtype):
            raise CheckFailed(f'optim_wrapper is {wrapper.type} '
                              f"({wrapper.get('dtype')}), not {amp_type} "
                              f'({amp_dtype})')
        summary += f', {wrapper.type} {amp_dtype}'
    return summary


def check_test(output: str) -> str:
    """``tools/test.py`` printed the COCO metric."""
    match = re.search(r'coco/bbox_mAP: (-?[\d.]+)', output)
    if not match:
        raise CheckFailed('no coco/bbox_mAP in the output of tools/test.py')
    return f'coco/bbox_mAP {match[1]}'


def check_doctor(path: str) -> str:
    """The doctor's JSON: every distillation loss finite with a gradient
    into the student, and the AKD losses' Avatar weights."""
    with open(path) as f:
        report = json.load(f)
    losses = report['losses']
    if not losses:
        raise CheckFailed('the doctor found no distillation loss')
    for name, entry in losses.items():
        if not (math.isfinite(entry['value'])
                and math.isfinite(entry['grad_norm'])):
            raise CheckFailed(f'{name}: value {entry["value"]}, gradient '
                              f'norm {entry["grad_norm"]}')
    akd = [n for n, e in losses.items() if e.get('akd')]
    if not akd:
        raise CheckFailed('no AKD loss in the report')
    kinds = sorted({w['kind'] for w in report.get('warnings', [])})
    return (f'{len(losses)} losses ({len(akd)} with Avatars), warnings: ' +
            (', '.join(kinds) or 'none'))


def check_benchmark(path: str, cases: List[str]) -> str:
    """Every case measured with a finite positive median step."""
    with open(path) as f:
        payload = json.load(f)
    measured = payload['cases']
    missing = [c for c in cases if c not in measured]
    if missing:
        raise CheckFailed(f"cases not measured: {', '.join(missing)}")
    for name in cases:
        step = measured[name]['step_ms_median']
        if not (math.isfinite(step) and step > 0):
            raise CheckFailed(f'{name}: median step {step} ms')
    size = 'x'.join(str(s) for s in payload.get('size', []))
    ratios = {name: measured[name].get('ratio_to_base') for name in cases}
    return (f"{len(cases)} cases at {size}, akd_k4/base step "
            f"{ratios.get('akd_k4') or float('nan'):.3f}, base "
            f"{measured['base']['step_ms_median']:.1f} ms")


def check_pytest(output: str) -> str:
    """pytest's last line: something passed, nothing failed or errored."""
    lines = [line for line in output.strip().splitlines() if line.strip()]
    last = lines[-1].strip('= ') if lines else ''
    if ' passed' not in last or re.search(r'\d+ (failed|error)', last):
        raise CheckFailed(f'pytest: {last or "no summary"}')
    return last
