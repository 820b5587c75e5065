# Copyright (c) mmakd contributors. All rights reserved.
"""The steps of the CUDA check: each one a command a user would run, and
the check of what it produced."""
import json
import os.path as osp
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Sequence, Tuple

from ..benchmark import CASES
from ..demo.tasks import TASKS, run_options
from ..experiment import to_cli_options
from . import checks
from .bootstrap import VERIFY_CODE

__all__ = ['Step', 'plan_steps', 'BENCH_PAIRS']

#: MMRazor's pairs the benchmark runs at full resolution on CUDA.
BENCH_PAIRS = (
    ('bench_retinanet', 'configs/akd/mmdet/cwd/akd_cwd_fpn_retinanet-r101_'
     'retinanet-r50_8xb2-2x_coco.py'),
    ('bench_pspnet', 'configs/akd/mmseg/cwd/akd_cwd_logits_pspnet-r101-d8_'
     'pspnet-r18-d8_4xb2-80k_cityscapes-512x1024.py'),
)
#: The benchmark on CPU: tiny inputs, one step per case.
BENCH_TINY = ('--size', '128', '128', '--iters', '1', '--warmup', '0',
              '--mem-steps', '1', '--batch-size', '2')
#: The demo runs' length and data in the check: one iteration each, on 8
#: generated training and 4 validation images (synthetic shapes).
SIZE = dict(
    num_train=8, num_val=4, log_interval=1, teacher_iters=1, student_iters=1)


@dataclass
class Step:
    """One step: ``python ARGV`` run in the repository, then ``check()``
    (given the step's output) returns a summary or raises
    :class:`~.checks.CheckFailed`."""
    name: str
    what: str
    argv: List[str]
    check: Callable[[str], str]
    requires: Tuple[str, ...] = ()
    timeout: int = 600
    files: List[str] = field(default_factory=list)


def _read_json(path: str) -> Dict[str, Any]:
    with open(path) as f:
        return json.load(f)


def _run(task: str, name: str) -> Dict[str, Any]:
    return next(r for r in TASKS[task]['runs'] if r['name'] == name)


def _options(task: str, name: str, shapes: str, **extra: Any) -> List[str]:
    options = run_options(TASKS[task], SIZE, shapes, 0, _run(task, name))
    options.update(extra)
    return to_cli_options(options)


def _train_steps(task: str, device: str, work: str, shapes: str) -> List[Step]:
    """Train the demo teacher one iteration, then the demo AKD config one
    iteration in float32 and one with ``--amp``."""
    teacher_dir = osp.join(work, f'{task}_teacher')
    ckpt = osp.join(teacher_dir, 'iter_1.pth')
    teacher = _run(task, 'teacher')['config']
    akd = _run(task, 'akd')['config']
    amp = (('AmpOptimWrapper', 'float16') if device == 'cuda' else
           ('mmrazor.CPUAmpOptimWrapper', 'bfloat16'))
    steps = [
        Step(
            f'{task}_teacher',
            f'train the demo {task} teacher 1 iteration',
            [
                'tools/train.py', teacher, '--work-dir', teacher_dir,
                '--cfg-options'
            ] + _options(task, 'teacher', shapes),
            lambda out, d=teacher_dir: checks.check_training(d, 1, False),
            ('data', ))
    ]
    for suffix, flags in (('', []), ('_amp', ['--amp'])):
        work_dir = osp.join(work, f'{task}_akd{suffix}')
        steps.append(
            Step(
                f'{task}_akd{suffix}',
                f'AKD on the demo {task} pair, 1 iteration' +
                (f' with --amp ({amp[1]})' if flags else ''),
                [
                    'tools/train.py', akd, '--work-dir', work_dir, *flags,
                    '--cfg-options'
                ] +
                _options(task, 'akd', shapes, **{'model.teacher_ckpt': ckpt}),
                lambda out, d=work_dir, a=bool(flags): checks.check_training(
                    d, 1, True, *(amp if a else ())), (f'{task}_teacher', )))
    return steps


def plan_steps(device: str,
               out: str,
               work: str,
               bench_cases: Sequence[str] = CASES) -> List[Step]:
    """Every step of the check, in order.

    Args:
        device (str): ``cuda``, or ``cpu`` for the tiny run CI makes.
        out (str): The results folder (JSON, Markdown, logs).
        work (str): Scratch folder for data, work dirs and checkpoints.
        bench_cases (list[str]): The benchmark's cases.
    """
    shapes = osp.join(work, 'shapes') + '/'
    env_json = osp.join(out, 'env.json')
    steps = [
        Step('env', 'versions, GPU, mmcv ops', ['-c', VERIFY_CODE, env_json],
             lambda out: checks.check_env(_read_json(env_json), device)),
        Step('data', 'generate the synthetic shapes data (8 + 4 images)', [
            'tools/dataset_converters/make_shapes.py', shapes, '--num-train',
            str(SIZE['num_train']), '--num-val',
            str(SIZE['num_val'])
        ], lambda out: f'{SIZE["num_train"]} + {SIZE["num_val"]} images')
    ]
    det_teacher = _run('det', 'teacher')['config']
    steps += _train_steps('det', device, work, shapes)
    steps.append(
        Step('det_test', 'tools/test.py on the demo detector (mmcv NMS)', [
            'tools/test.py', det_teacher,
            osp.join(work, 'det_teacher', 'iter_1.pth'), '--work-dir',
            osp.join(work, 'det_test'), '--cfg-options'
        ] + _options('det', 'teacher', shapes, **
                     {'model.test_cfg.score_thr': 0.0}), checks.check_test,
             ('det_teacher', )))
    steps += _train_steps('seg', device, work, shapes)
    doctor_json = osp.join(out, 'doctor.json')
    steps.append(
        Step('doctor', f'the doctor on the demo det AKD config, {device}', [
            'tools/analysis_tools/analyze_distill.py',
            _run('det', 'akd')['config'], '--device', device, '--iters', '2',
            '--batch-size', '2', '--json', doctor_json, '--out-dir',
            osp.join(out, 'doctor'), '--cfg-options'
        ] + _options(
            'det', 'akd', shapes, **{
                'model.teacher_ckpt': osp.join(work, 'det_teacher',
                                               'iter_1.pth')
            }), lambda out: checks.check_doctor(doctor_json),
             ('det_teacher', )))
    steps.append(
        Step('unit_tests', f'pytest -m device --device {device}', [
            '-m', 'pytest', 'tests', '-m', 'device and not slow', '--device',
            device, '-q', '-p', 'no:cacheprovider', '--junitxml',
            osp.join(out, 'unit_tests.xml')
        ], checks.check_pytest))
    for name, config in BENCH_PAIRS:
        bench_json = osp.join(out, f'{name}.json')
        size = () if device == 'cuda' else BENCH_TINY
        steps.append(
            Step(
                name,
                f'benchmark_distill.py {osp.basename(config)[:-3]}, '
                f'{len(bench_cases)} cases, ' +
                ('full resolution' if device == 'cuda' else 'tiny inputs'), [
                    'tools/analysis_tools/benchmark_distill.py', config,
                    '--device', device, *size, '--json', bench_json,
                    '--markdown',
                    osp.join(out, f'{name}.md'), '--cases', *bench_cases
                ],
                lambda out, p=bench_json: checks.check_benchmark(
                    p, list(bench_cases))))
    return steps
