# Copyright (c) mmakd contributors. All rights reserved.
"""mmakd's demo: a real teacher -> student distillation on CPU, in minutes.

``--task det``, detection on the synthetic shapes dataset in COCO format
(MMDetection's ``CocoDataset`` and ``CocoMetric``, bbox mAP):

1. trains a RetinaNet teacher (ResNet-18 at width 32, FPN) from scratch,
2. trains the student (width 8) alone,
3. trains the student with CWD on the FPN levels (MMRazor's recipe),
4. with AKD in the reference code's setting (one dropout Avatar, p = 0.1,
   only the student standardised),
5. with AKD in mmakd's recommended setting.

``--task seg``, segmentation on the same images (Cityscapes layout):

1. trains a PSPNet teacher from scratch,
2. trains the student alone,
3. trains the student with the base distiller (CWD on logits),
4. trains it with AKD (the same CWD plus Avatars).

``--task mgkd``, multi-granularity distillation on the synthetic
CIFAR-100-format dataset (20 classes): a ResNet-20 teacher, stage 1 (the
teacher's two tubes), a ResNet-8 student alone, with KD, and with KD plus
multi-granularity distillation.

``--task ensemble``, the teacher-ensemble study of docs/ensemble.md on
the detection task: trains the teacher from 4 seeds, then, with
``tools/reproduce.py`` over 5 student seeds (100-104), CWD from one
teacher (seed 0), CWD from the mean of the 4 teachers
(``MultiTeacherDistill``) and AKD with 4 Avatars of the one teacher; it
reports how much of the ensemble's gain over CWD the Avatars recover, the
s/iter of each and the teachers' training time (``ensemble.{md,json}``).
Finished runs in the work directory are reused.

``--task all`` (what ``make demo`` runs) is ``det`` then ``seg``.

Every run is ``tools/train.py`` through the real MMDetection, MMSegmentation
or MMPretrain dataset classes, pipelines and metrics; the demo writes
``results.md``, ``results.json`` and ``curves.png`` into the work
directory (``WORK_DIR/<task>`` with ``--task all``). All numbers are
measured on synthetic data, and say so.

    python tools/demo.py                         # det + seg, < 30 min on 2
                                                 # CPU cores
    python tools/demo.py --task det --quick --work-dir DIR  # < 4 min
    python tools/demo.py --task seg              # ~14 min (quick: ~2 min)
    python tools/demo.py --task mgkd [--quick]   # ~15 min (quick: ~3 min)
    python tools/demo.py --task ensemble [--quick]  # ~50 min (quick: ~4)
"""
import argparse
import json
import os
import os.path as osp
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)

from mmakd.apis import RunResult, portable_command  # noqa: E402
from mmakd.apis.experiment import machine_description  # noqa: E402
from mmakd.apis.experiment import portable_path  # noqa: E402
from mmakd.apis.experiment import relative_path, train  # noqa: E402

DEMO = 'configs/akd/demo'
MGKD = 'configs/mgkd/mmpretrain/synthetic'


def _run(name: str,
         config: str,
         label: str,
         length: str = 'student',
         checkpoints: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """One training run of a demo: ``checkpoints`` maps a config key to the
    earlier run whose last checkpoint it loads."""
    return dict(
        name=name,
        config=config,
        label=label,
        length=length,
        checkpoints=checkpoints or {})


TEACHER_CKPT = {'model.teacher_ckpt': 'teacher'}
DET = 'retinanet-r18-w32_retinanet-r18-w8_1xb8-400it_shapes-128.py'
SHAPES_DESC = ('the generated shapes dataset ({num_train} training and '
               '{num_val} validation images, 128x128)')
TASKS: Dict[str, Dict[str, Any]] = dict(
    # AKD: RetinaNet on the synthetic shapes data in COCO format,
    # iteration-based; CWD on the FPN levels as in MMRazor's recipe.
    det=dict(
        runs=[
            _run(
                'teacher',
                f'{DEMO}/retinanet_r18-w32_fpn-64_1xb8-2000it_shapes-128.py',
                'teacher',
                length='teacher'),
            _run('student',
                 f'{DEMO}/retinanet_r18-w8_fpn-64_1xb8-400it_shapes-128.py',
                 'student alone'),
            _run('cwd', f'{DEMO}/cwd_fpn_{DET}', 'student + CWD (FPN)',
                 'student', TEACHER_CKPT),
            _run('akd_reference', f'{DEMO}/akd-reference_cwd_fpn_{DET}',
                 'student + AKD, reference setting (K=1, p=0.1)', 'student',
                 TEACHER_CKPT),
            _run('akd', f'{DEMO}/akd_cwd_fpn_{DET}',
                 'student + AKD, recommended setting', 'student',
                 TEACHER_CKPT),
        ],
        data='synthetic shapes',
        data_desc=SHAPES_DESC + ' in COCO format, not COCO',
        metric='coco/bbox_mAP',
        # CocoMetric reports fractions; tables show mAP points.
        scale=100,
        metric_label='bbox mAP',
        task_loss='loss_cls',
        distill_loss='distill.loss_cwd_fpn',
        by_epoch=False,
        schedule=('param_scheduler.1.end', 'param_scheduler.1.T_max'),
        evaluator_ann='annotations/instances_val.json',
        full=dict(
            teacher_iters=2000,
            student_iters=400,
            num_train=400,
            num_val=100,
            log_interval=20),
        quick=dict(
            teacher_iters=30,
            student_iters=20,
            num_train=48,
            num_val=16,
            log_interval=10)),
    # AKD: PSPNet on the synthetic shapes segmentation data, iteration-based.
    seg=dict(
        runs=[
            _run(
                'teacher', f'{DEMO}/pspnet_r18-w32_1xb8-1600it_'
                'shapes-128.py',
                'teacher',
                length='teacher'),
            _run('student', f'{DEMO}/pspnet_r18-w8_1xb8-600it_shapes-128.py',
                 'student alone'),
            _run(
                'cwd', f'{DEMO}/cwd_logits_pspnet-r18-w32_pspnet-r18-w8_'
                '1xb8-600it_shapes-128.py', 'student + CWD', 'student',
                TEACHER_CKPT),
            _run(
                'akd', f'{DEMO}/akd_cwd_logits_pspnet-r18-w32_pspnet-r18-w8_'
                '1xb8-600it_shapes-128.py', 'student + AKD (CWD + Avatars)',
                'student', TEACHER_CKPT),
        ],
        data='synthetic shapes',
        data_desc=SHAPES_DESC + ', not Cityscapes',
        metric='mIoU',
        task_loss='decode.loss_ce',
        distill_loss='distill.loss_cwd',
        by_epoch=False,
        schedule=('param_scheduler.0.end', ),
        full=dict(
            teacher_iters=1600,
            student_iters=600,
            num_train=400,
            num_val=100,
            log_interval=20),
        quick=dict(
            teacher_iters=40,
            student_iters=30,
            num_train=48,
            num_val=16,
            log_interval=10)),
    # Multi-granularity distillation: CIFAR-100 configs on the synthetic
    # CIFAR-like data, epoch-based (the configs' own 3-4 epochs; quick mode
    # shrinks the dataset instead).
    mgkd=dict(
        runs=[
            _run('teacher', f'{MGKD}/resnet20-cifar_1xb32-4e_cifar-like.py',
                 'teacher ResNet-20'),
            _run(
                'analyser', f'{MGKD}/mgkd-analyser_resnet20-cifar_1xb32-3e_'
                'cifar-like.py',
                "stage 1: tubes (narrow tube's decoder)",
                checkpoints=TEACHER_CKPT),
            _run('student', f'{MGKD}/resnet8-cifar_1xb32-4e_cifar-like.py',
                 'student ResNet-8 alone'),
            _run(
                'kd', f'{MGKD}/kd_resnet20-cifar_resnet8-cifar_1xb32-4e_'
                'cifar-like.py',
                'student + KD',
                checkpoints=TEACHER_CKPT),
            _run(
                'mgkd', f'{MGKD}/mgkd_kd_resnet20-cifar_resnet8-cifar_1xb32-'
                '4e_cifar-like.py',
                'student + KD + MGKD',
                checkpoints={
                    'model.teacher_ckpt': 'teacher',
                    'model.distiller.connectors.t_tubes.checkpoint': 'analyser'
                }),
        ],
        data='synthetic CIFAR-like',
        data_desc='the generated CIFAR-100-format dataset (20 classes, '
        '{num_train} training and {num_val} test images, 32x32), not '
        'CIFAR-100',
        metric='accuracy/top1',
        task_loss='loss',
        distill_loss='distill.loss_stable',
        by_epoch=True,
        full=dict(train_per_class=50, test_per_class=20, log_interval=10),
        quick=dict(train_per_class=4, test_per_class=2, log_interval=1)),
)


def generate(task: str, size: Dict[str, Any], root: str,
             seed: int) -> Tuple[int, int]:
    """Write the task's synthetic dataset (idempotent).

    Returns:
        tuple[int, int]: The numbers of training and validation images.
    """
    if task in ('det', 'seg'):
        from mmakd.datasets.shapes import generate_shapes
        generate_shapes(
            root,
            num_train=size['num_train'],
            num_val=size['num_val'],
            size=128,
            seed=seed)
        return size['num_train'], size['num_val']
    from mmakd.datasets import generate_cifar_like
    classes = 20  # configs/mgkd/mmpretrain/synthetic: cifar_like_classes
    generate_cifar_like(
        root,
        num_classes=classes,
        train_per_class=size['train_per_class'],
        test_per_class=size['test_per_class'],
        seed=seed)
    return (classes * size['train_per_class'],
            classes * size['test_per_class'])


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Distil a teacher into a student with and without AKD '
        'on synthetic data, on CPU.')
    parser.add_argument(
        '--task',
        choices=sorted(TASKS) + ['all', 'ensemble'],
        default='all',
        help='all: det, then seg (default)')
    parser.add_argument(
        '--quick',
        action='store_true',
        help='very few iterations (< 4 min per task): a smoke run')
    parser.add_argument(
        '--work-dir',
        default=None,
        help='default: work_dirs/akd_demo/<task>[_quick]; with --task all, '
        'each task writes into WORK_DIR/<task>')
    parser.add_argument(
        '--data',
        default=None,
        help='dataset folder (default: data/shapes or '
        'data/cifar-like, WORK_DIR/data with --quick); with --task all, '
        'only for det and seg, which share it')
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args()


def say(message: str) -> None:
    print(f'[demo] {message}', flush=True)


def progress(name: str, line: str) -> None:
    """One of MMEngine's log lines, without its timestamp prefix."""
    print(f'  [{name}] {line.split(" - INFO - ", 1)[-1]}', flush=True)


def run_options(task: Dict[str, Any], size: Dict[str, Any], data_root: str,
                seed: int, run: Dict[str, Any]) -> Dict[str, Any]:
    """--cfg-options for one run: data location, length, seed."""
    options: Dict[str, Any] = {'randomness.seed': seed}
    for split in ('train', 'val', 'test'):
        options[f'{split}_dataloader.dataset.data_root'] = data_root
    options['default_hooks.logger.interval'] = size['log_interval']
    if task.get('evaluator_ann'):
        for split in ('val', 'test'):
            options[f'{split}_evaluator.ann_file'] = (
                data_root + task['evaluator_ann'])
    if not task['by_epoch']:
        iters = size[f"{run['length']}_iters"]
        options.update({
            'train_cfg.max_iters': iters,
            'train_cfg.val_interval': iters,
            'default_hooks.checkpoint.interval': iters,
        })
        options.update({key: iters for key in task['schedule']})
    return options


def _length(result: RunResult, by_epoch: bool) -> str:
    if not result.train_log:
        return '0'
    last = result.train_log[-1]
    if by_epoch:
        return f"{last.get('epoch', '?')} epochs ({last['iter']} it)"
    return str(last['iter'])


def metric_value(result: RunResult, task: Dict[str, Any]) -> float:
    """The task's metric as shown in tables (bbox mAP in points)."""
    value = result.metrics.get(task['metric'], float('nan'))
    return value * task.get('scale', 1)


#: Printed beside every demo table (results.md and the console).
CROSS_MACHINE = (
    'Your numbers will differ from the README\'s by about half a point per '
    'run: within one machine runs are bit-identical, but on other CPU '
    'kernels the losses drift apart from about iteration 40. One run per '
    'method ranks nothing: a fresh clone of the detection demo on another '
    'machine printed teacher 8.50, student 4.80, CWD 6.30, AKD reference '
    '6.40, AKD 5.90 bbox mAP against the README\'s 8.70 / 4.90 / 6.70 / '
    '5.80 / 6.50 (CWD and AKD swapped).')


def markdown(results: Dict[str, RunResult], task: Dict[str, Any],
             meta: Dict) -> str:
    label = task.get('metric_label', task['metric'])
    data = task['data_desc'].format(**meta)
    lines = [
        f"# mmakd demo ({meta['task']}, {meta['mode']} run)",
        '',
        f"Synthetic data: {data}. Machine: {meta['machine']}. One seed "
        f"({meta['seed']}); for a claim, use `tools/reproduce.py` over "
        'several seeds (docs/evidence.md).',
        '',
        CROSS_MACHINE,
        '',
        f'| run | {label} (val) | s / iter | length | total time (s) |',
        '|---|---|---|---|---|',
    ]
    for run in task['runs']:
        r = results[run['name']]
        lines.append(
            f"| {run['label']} | {metric_value(r, task):.2f} "
            f'| {r.sec_per_iter:.3f} | {_length(r, task["by_epoch"])} '
            f'| {r.wall_seconds:.0f} |')
    lines += ['', 'Commands (re-run any step by hand):', '']
    for run in task['runs']:
        command = ' '.join(portable_command(results[run['name']].command))
        lines.append(f"- {run['name']}: `{command}`")
    return '\n'.join(lines) + '\n'


def _loss(record: Dict[str, Any], key: str) -> Optional[float]:
    """``record[key]``, or the sum of the keys ``key`` is a prefix of (the
    per-level losses ``distill.loss_cwd_fpn0``, ``...fpn1``...)."""
    if key in record:
        return record[key]
    parts = [v for k, v in record.items() if k.startswith(key)]
    return sum(parts) if parts else None


def plot(results: Dict[str, RunResult], task: Dict[str, Any],
         path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    own, dkey = task['task_loss'], task['distill_loss']
    for run in task['runs']:
        log = results[run['name']].train_log
        for ax, keys in ((axes[0], (own, f'student.{own}')), (axes[1],
                                                              (dkey, ))):
            for key in keys:
                points = [(r['iter'], _loss(r, key)) for r in log
                          if _loss(r, key) is not None]
                if points:
                    ax.plot(*zip(*points), label=run['label'])
    axes[0].set_title(f"student's own loss ({own})")
    axes[1].set_title(f'distillation loss ({dkey}*)')
    for ax in axes:
        ax.set_xlabel('iteration')
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(f"mmakd demo on {task['data']} data (synthetic)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_task(name: str, quick: bool, work_dir: str, data: Optional[str],
             seed: int) -> str:
    """Train every run of one task; write its results files.

    Returns:
        str: The markdown table.
    """
    task = TASKS[name]
    mode = 'quick' if quick else 'full'
    size = task[mode]
    runs = task['runs']
    total = len(runs) + 1
    default_data = 'data/cifar-like' if name == 'mgkd' else 'data/shapes'
    # tools/train.py runs in the repository: give it absolute paths
    work_dir = osp.abspath(work_dir)
    data_root = data or (osp.join(work_dir, 'data') if quick else default_data)
    os.makedirs(work_dir, exist_ok=True)
    start = time.perf_counter()

    say(f"[{name}] 1/{total} generating the {task['data']} dataset in "
        f'{data_root}')
    num_train, num_val = generate(name, size, data_root, seed)
    data_root = osp.abspath(data_root) + '/'

    results: Dict[str, RunResult] = {}
    for step, run in enumerate(runs, start=2):
        run_name = run['name']
        options = run_options(task, size, data_root, seed, run)
        for key, source in run['checkpoints'].items():
            options[key] = results[source].checkpoint
        length = ('its epochs' if task['by_epoch'] else
                  f"{options['train_cfg.max_iters']} iterations")
        say(f"[{name}] {step}/{total} training {run['label']} ({length}) -> "
            f'{osp.join(work_dir, run_name)}')
        results[run_name] = train(
            run_name,
            run['config'],
            osp.join(work_dir, run_name),
            options,
            echo=lambda line, n=run_name: progress(n, line))
        label = task.get('metric_label', task['metric'])
        say(f"[{name}] {run['label']}: {label} "
            f'{metric_value(results[run_name], task):.2f} '
            f'({results[run_name].wall_seconds:.0f} s)')

    meta = dict(
        task=name,
        mode=mode,
        seed=seed,
        data=task['data'],
        data_root=portable_path(data_root.rstrip('/')) + '/',
        num_train=num_train,
        num_val=num_val,
        machine=machine_description(),
        total_seconds=time.perf_counter() - start)
    report = markdown(results, task, meta)
    with open(osp.join(work_dir, 'results.md'), 'w') as f:
        f.write(report)
    payload: Dict[str, Any] = {
        run['name']: results[run['name']].to_dict(logs=True)
        for run in runs
    }
    payload['meta'] = meta
    payload['metric'] = task['metric']
    payload['metric_scale'] = task.get('scale', 1)
    with open(osp.join(work_dir, 'results.json'), 'w') as f:
        json.dump(payload, f, indent=2)
    plot(results, task, osp.join(work_dir, 'curves.png'))
    say(f'[{name}] wrote {work_dir}/results.md, results.json and curves.png '
        f'in {meta["total_seconds"] / 60:.1f} min')
    return report


# ---------------------------------------------------------------------------
# --task ensemble: a real teacher ensemble against Avatars (docs/ensemble.md)
# ---------------------------------------------------------------------------
ENSEMBLE: Dict[str, Any] = dict(
    teacher=f'{DEMO}/retinanet_r18-w32_fpn-64_1xb8-2000it_shapes-128.py',
    teacher_seeds=(0, 1, 2, 3),
    cwd=f'{DEMO}/cwd_fpn_{DET}',
    ensemble=f'{DEMO}/cwd_fpn_4x{DET}',
    akd=f'{DEMO}/akd_cwd_fpn_{DET}',
    first_seed=100,
    full=dict(seeds=5),
    quick=dict(seeds=2),
)
ARMS = (('cwd', 'CWD, one teacher (seed 0)'), ('ensemble',
                                               'CWD, mean of the 4 teachers'),
        ('akd', 'AKD, 4 Avatars of one teacher (seed 0)'))


def _reproduce(config_a: str, config_b: str, names: Tuple[str, str],
               work_dir: str, report_dir: str, seeds: int, common: Dict,
               option_a: Dict, option_b: Dict, note: str) -> Dict[str, Any]:
    """``tools/reproduce.py`` in a fresh process (finished runs reused);
    returns its ``reproduce.json``."""
    import subprocess

    from mmakd.apis.experiment import to_cli_options

    command = [
        sys.executable,
        osp.join(REPO, 'tools', 'reproduce.py'), config_a, config_b, '--names',
        *names, '--seeds',
        str(seeds), '--first-seed',
        str(ENSEMBLE['first_seed']), '--work-dir',
        osp.abspath(work_dir), '--report-dir',
        osp.abspath(report_dir), '--reuse', '--note', note
    ]
    for flag, options in (('--cfg-options', common), ('--options-a', option_a),
                          ('--options-b', option_b)):
        if options:
            command += [flag] + to_cli_options(options)
    proc = subprocess.Popen(
        command,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1)
    tail = []
    for line in proc.stdout:
        line = line.rstrip()
        tail = (tail + [line])[-40:]
        if line.startswith('[reproduce]') or 'Iter(train)' in line:
            print(f'  {line.strip()}', flush=True)
    if proc.wait() != 0:
        raise RuntimeError('tools/reproduce.py failed:\n' + '\n'.join(tail))
    with open(osp.join(osp.abspath(report_dir), 'reproduce.json')) as f:
        return json.load(f)


def _per_arm(report: Dict[str, Any], name: str) -> Dict[str, Any]:
    runs = [r for r in report['runs'] if r['name'] == name]
    return dict(
        values=report['values'][name],
        sec_per_iter=sorted(r['sec_per_iter'] for r in runs),
        wall_seconds=[r['wall_seconds'] for r in runs],
        commands=[' '.join(r['command']) for r in runs])


def ensemble_summary(ens_report: Dict[str, Any], akd_report: Dict[str, Any],
                     teachers: Dict[int, Dict[str, Any]]) -> Dict[str, Any]:
    """The study's numbers from the two reproduce reports (CWD vs the
    ensemble, CWD vs AKD; same CWD runs) and the teachers' runs.

    ``recovered`` is the mean AKD gain over CWD divided by the mean
    ensemble gain over CWD; it is only given a meaning (``recovered_valid``)
    when the ensemble's gain is positive with a 95% CI above zero.
    """
    from mmakd.apis.experiment import paired_summary
    if ens_report['values']['cwd'] != akd_report['values']['cwd'] or \
            ens_report['seeds'] != akd_report['seeds']:
        raise ValueError('the two reports must share the same CWD runs')
    arms = dict(
        cwd=_per_arm(ens_report, 'cwd'),
        ensemble=_per_arm(ens_report, 'ensemble'),
        akd=_per_arm(akd_report, 'akd'))
    cwd, ens, akd = (arms[k]['values'] for k in ('cwd', 'ensemble', 'akd'))
    gains = dict(
        ensemble_vs_cwd=paired_summary(cwd, ens),
        akd_vs_cwd=paired_summary(cwd, akd),
        akd_vs_ensemble=paired_summary(ens, akd))
    ens_gain = gains['ensemble_vs_cwd']
    akd_gain = gains['akd_vs_cwd']['diff']['mean']
    valid = ens_gain['diff']['mean'] > 0 and \
        ens_gain.get('ci95', [0.0])[0] > 0
    recovered = akd_gain / ens_gain['diff']['mean'] \
        if ens_gain['diff']['mean'] else float('nan')
    seed0 = teachers[min(teachers)]
    return dict(
        metric=ens_report['metric'],
        scale=ens_report['scale'],
        seeds=ens_report['seeds'],
        arms=arms,
        gains=gains,
        recovered=recovered,
        recovered_valid=bool(valid),
        teachers={
            str(s): t
            for s, t in teachers.items()
        },
        teacher_seconds=dict(
            one=seed0['wall_seconds'],
            all=sum(t['wall_seconds'] for t in teachers.values())))


def _ms(values: List[float]) -> str:
    from mmakd.apis.experiment import _mean_std
    m = _mean_std(values)
    return f"{m['mean']:.2f} ± {m['std']:.2f}"


def ensemble_markdown(summary: Dict[str, Any], meta: Dict[str, Any]) -> str:
    """``ensemble.md``: teachers, the three arms, gains and costs."""
    scale = summary['scale']
    label = 'bbox mAP' if summary['metric'] == 'coco/bbox_mAP' else \
        summary['metric']
    lines = [
        f"# Teacher ensemble vs Avatars ({meta['mode']} run)", '',
        f"Synthetic data: {meta['data']}. Machine: {meta['machine']}. "
        f"Student seeds {summary['seeds']}; {label} in points"
        f"{' (x100)' if scale == 100 else ''}.", '', '## Teachers', '',
        f'| teacher seed | {label} | training time (s) |', '|---|---|---|'
    ]
    for seed, t in summary['teachers'].items():
        lines.append(f"| {seed} | {t['metric'] * scale:.2f} | "
                     f"{t['wall_seconds']:.0f} |")
    ts = summary['teacher_seconds']
    lines += [
        '', f"Teacher training: {ts['one']:.0f} s for one teacher, "
        f"{ts['all']:.0f} s for the four.", '', '## Students', '',
        f'| student | {label} (mean ± std) | s / iter (median) |',
        '|---|---|---|'
    ]
    for key, text in ARMS:
        arm = summary['arms'][key]
        spi = arm['sec_per_iter']
        lines.append(f'| {text} | {_ms(arm["values"])} | '
                     f'{spi[len(spi) // 2]:.3f} |')
    lines += [
        '', '| paired difference | mean ± std | 95% CI | p |',
        '|---|---|---|---|'
    ]
    for key, text in (('ensemble_vs_cwd', 'ensemble - CWD'),
                      ('akd_vs_cwd', 'AKD - CWD'), ('akd_vs_ensemble',
                                                    'AKD - ensemble')):
        g = summary['gains'][key]
        d = g['diff']
        ci = g.get('ci95')
        ci_text = f'[{ci[0]:+.2f}, {ci[1]:+.2f}]' if ci else '-'
        p = f"{g['p_value']:.3f}" if 'p_value' in g else '-'
        lines.append(f"| {text} | {d['mean']:+.2f} ± {d['std']:.2f} | "
                     f'{ci_text} | {p} |')
    lines.append('')
    if summary['recovered_valid']:
        lines.append(
            'Share of the ensemble gain over CWD that the Avatars recover: '
            f"**{summary['recovered'] * 100:.0f}%** (mean AKD gain / mean "
            'ensemble gain).')
    else:
        lines.append(
            'The ensemble does not beat CWD with a 95% CI above zero, so '
            'there is no gain for the Avatars to recover (ratio of the mean '
            f"gains: {summary['recovered']:.2f}, not meaningful).")
    lines += [
        '', f"Reports and logs: `{meta['reports']}`. Total time "
        f"{meta['total_seconds'] / 60:.1f} min."
    ]
    return '\n'.join(lines) + '\n'


def ensemble_options(quick: bool, data_root: str,
                     seed: int) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """``--cfg-options`` of the study's student and teacher runs (no seed).

    Full runs on the repository's ``data/shapes`` use the configs as they
    are (the commands of docs/ensemble.md); quick runs or other data (e.g.
    ``data/shapes`` of another folder the demo was started in) pass the
    data location and the lengths of the detection task as options.
    """
    if not quick and data_root == osp.join(REPO, 'data', 'shapes') + '/':
        return {}, {}
    task = TASKS['det']
    size = task['quick' if quick else 'full']
    student, teacher = (
        run_options(task, size, data_root, seed, dict(length=length))
        for length in ('student', 'teacher'))
    for options in (student, teacher):
        options.pop('randomness.seed')
    return student, teacher


def run_ensemble(name: str, quick: bool, work_dir: str, data: Optional[str],
                 seed: int) -> str:
    """The teacher-ensemble study (``--task ensemble``); see the module
    docstring. Returns the markdown report."""
    task = TASKS['det']
    mode = 'quick' if quick else 'full'
    size = task[mode]
    seeds = ENSEMBLE[mode]['seeds']
    teacher_seeds = ENSEMBLE['teacher_seeds']
    total = len(teacher_seeds) + 4
    start = time.perf_counter()
    # tools/train.py and tools/reproduce.py run in the repository: give
    # them absolute paths
    work_dir = osp.abspath(work_dir)
    os.makedirs(work_dir, exist_ok=True)
    data_root = data or (osp.join(work_dir, 'data')
                         if quick else 'data/shapes')
    say(f'[ensemble] 1/{total} generating the synthetic shapes dataset in '
        f'{data_root}')
    generate('det', size, data_root, seed)
    data_root = osp.abspath(data_root) + '/'
    common, teacher_options = ensemble_options(quick, data_root, seed)
    teachers: Dict[int, Dict[str, Any]] = {}
    checkpoints = []
    for step, t_seed in enumerate(teacher_seeds, start=2):
        run_name = f'teacher_seed{t_seed}'
        say(f'[ensemble] {step}/{total} training the teacher from seed '
            f'{t_seed} -> {osp.join(work_dir, run_name)}')
        options = dict(teacher_options, **{'randomness.seed': t_seed})
        result = train(
            run_name,
            ENSEMBLE['teacher'],
            osp.join(work_dir, run_name),
            options,
            echo=lambda line, n=run_name: progress(n, line),
            reuse=True)
        value = result.metrics.get(task['metric'], float('nan'))
        say(f'[ensemble] teacher seed {t_seed}: bbox mAP {value * 100:.2f} '
            f'({result.wall_seconds:.0f} s)')
        teachers[t_seed] = dict(
            metric=value,
            wall_seconds=result.wall_seconds,
            command=' '.join(portable_command(result.command)))
        checkpoints.append(relative_path(result.checkpoint))
    one = {'model.teacher_ckpt': checkpoints[0]}
    note = ('Synthetic shapes data (COCO format, not COCO); '
            'python tools/demo.py --task ensemble.')
    students = osp.join(work_dir, 'students')
    reports = {}
    for step, (other, config, options) in enumerate(
        (('ensemble', ENSEMBLE['ensemble'], {
            'model.teacher_ckpts': checkpoints
        }), ('akd', ENSEMBLE['akd'], one)),
            start=len(teacher_seeds) + 2):
        say(f'[ensemble] {step}/{total} tools/reproduce.py: CWD vs '
            f'{other}, {seeds} seeds from {ENSEMBLE["first_seed"]}')
        reports[other] = _reproduce(ENSEMBLE['cwd'], config, ('cwd', other),
                                    students,
                                    osp.join(work_dir, f'cwd-vs-{other}'),
                                    seeds, common, one, options, note)
    say(f'[ensemble] {total}/{total} summary')
    summary = ensemble_summary(reports['ensemble'], reports['akd'], teachers)
    meta = dict(
        mode=mode,
        data=SHAPES_DESC.format(**size) + ' in COCO format, not COCO',
        machine=machine_description(),
        reports=portable_path(osp.abspath(work_dir)) + '/cwd-vs-*/',
        total_seconds=time.perf_counter() - start)
    report = ensemble_markdown(summary, meta)
    with open(osp.join(work_dir, 'ensemble.md'), 'w') as f:
        f.write(report)
    with open(osp.join(work_dir, 'ensemble.json'), 'w') as f:
        json.dump(dict(summary, meta=meta), f, indent=2)
    say(f'[ensemble] wrote {work_dir}/ensemble.md and ensemble.json in '
        f"{meta['total_seconds'] / 60:.1f} min")
    return report


def main() -> None:
    args = parse_args()
    names = ['det', 'seg'] if args.task == 'all' else [args.task]
    suffix = '_quick' if args.quick else ''
    start = time.perf_counter()
    reports = []
    for name in names:
        if args.work_dir is None:
            work_dir = osp.join('work_dirs', 'akd_demo', name + suffix)
        elif args.task == 'all':
            work_dir = osp.join(args.work_dir, name)
        else:
            work_dir = args.work_dir
        data = args.data
        if data is None and args.quick and args.task == 'all':
            data = osp.join(args.work_dir or osp.dirname(work_dir), 'data')
        # relative to the folder the demo was started in (the runs
        # themselves run in the repository)
        work_dir = osp.abspath(work_dir)
        data = osp.abspath(data) if data else data
        run = run_ensemble if name == 'ensemble' else run_task
        reports.append(run(name, args.quick, work_dir, data, args.seed))
    for report in reports:
        print()
        print(report)
    say(f'{"+".join(names)} done in '
        f'{(time.perf_counter() - start) / 60:.1f} min (synthetic data)')


if __name__ == '__main__':
    main()
