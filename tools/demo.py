# Copyright (c) mmakd contributors. All rights reserved.
"""mmakd's demo: a real teacher -> student distillation on CPU, in minutes.

``--task seg`` (the default, what ``make demo`` runs), on the synthetic
shapes segmentation dataset (generated here; COCO and Cityscapes cannot be
downloaded everywhere):

1. trains a PSPNet teacher from scratch,
2. trains the student alone,
3. trains the student with the base distiller (CWD on logits),
4. trains it with AKD (the same CWD plus Avatars).

``--task mgkd``, multi-granularity distillation on the synthetic
CIFAR-100-format dataset (20 classes): a ResNet-20 teacher, stage 1 (the
teacher's two tubes), a ResNet-8 student alone, with KD, and with KD plus
multi-granularity distillation.

Every run is ``tools/train.py`` through the real MMSegmentation or
MMPretrain dataset classes, pipelines and metrics; the demo writes
``results.md``, ``results.json`` and ``curves.png`` into the work
directory. All numbers are measured on synthetic data, and say so.

    python tools/demo.py                         # ~15 min on 2 CPU cores
    python tools/demo.py --quick --work-dir DIR  # < 3 min, same files
    python tools/demo.py --task mgkd [--quick]   # ~15 min (quick: ~3 min)
"""
import argparse
import json
import os
import os.path as osp
import platform
import sys
import time
from typing import Any, Dict, Optional, Tuple

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)

from mmakd.apis import RunResult, train  # noqa: E402

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
TASKS: Dict[str, Dict[str, Any]] = dict(
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
        data_desc='the generated shapes dataset ({num_train} training and '
        '{num_val} validation images, 128x128), not COCO or Cityscapes',
        metric='mIoU',
        task_loss='decode.loss_ce',
        distill_loss='distill.loss_cwd',
        by_epoch=False,
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
    if task == 'seg':
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
    parser.add_argument('--task', choices=sorted(TASKS), default='seg')
    parser.add_argument(
        '--quick',
        action='store_true',
        help='very few iterations (< 3 min): a smoke run')
    parser.add_argument(
        '--work-dir',
        default=None,
        help='default: work_dirs/akd_demo/<task>[_quick]')
    parser.add_argument(
        '--data',
        default=None,
        help='dataset folder (default: data/shapes or '
        'data/cifar-like, WORK_DIR/data with --quick)')
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
    if not task['by_epoch']:
        iters = size[f"{run['length']}_iters"]
        options.update({
            'train_cfg.max_iters': iters,
            'train_cfg.val_interval': iters,
            'param_scheduler.0.end': iters,
            'default_hooks.checkpoint.interval': iters,
        })
    return options


def _length(result: RunResult, by_epoch: bool) -> str:
    if not result.train_log:
        return '0'
    last = result.train_log[-1]
    if by_epoch:
        return f"{last.get('epoch', '?')} epochs ({last['iter']} it)"
    return str(last['iter'])


def markdown(results: Dict[str, RunResult], task: Dict[str, Any],
             meta: Dict) -> str:
    metric = task['metric']
    data = task['data_desc'].format(**meta)
    lines = [
        f"# mmakd demo ({meta['task']}, {meta['mode']} run)",
        '',
        f"Synthetic data: {data}. Machine: {meta['machine']}. One seed "
        f"({meta['seed']}); for a claim, use `tools/reproduce.py` over "
        'several seeds.',
        '',
        f'| run | {metric} (val) | s / iter | length | total time (s) |',
        '|---|---|---|---|---|',
    ]
    for run in task['runs']:
        r = results[run['name']]
        lines.append(
            f"| {run['label']} "
            f'| {r.metrics.get(metric, float("nan")):.2f} '
            f'| {r.sec_per_iter:.3f} | {_length(r, task["by_epoch"])} '
            f'| {r.wall_seconds:.0f} |')
    lines += ['', 'Commands (re-run any step by hand):', '']
    for run in task['runs']:
        command = ' '.join(results[run['name']].command[1:])
        lines.append(f"- {run['name']}: "
                     f"`python {command.replace(REPO + os.sep, '')}`")
    return '\n'.join(lines) + '\n'


def plot(results: Dict[str, RunResult], task: Dict[str, Any],
         path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    dkey = task['distill_loss']
    for run in task['runs']:
        log = results[run['name']].train_log
        for ax, key in ((axes[0], task['task_loss']),
                        (axes[0], f"student.{task['task_loss']}"), (axes[1],
                                                                    dkey)):
            points = [(r['iter'], r[key]) for r in log if key in r]
            if points:
                ax.plot(*zip(*points), label=run['label'])
    axes[0].set_title(f"student's own loss ({task['task_loss']})")
    axes[1].set_title(f'distillation loss ({dkey})')
    for ax in axes:
        ax.set_xlabel('iteration')
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(f"mmakd demo on {task['data']} data")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    args = parse_args()
    task = TASKS[args.task]
    mode = 'quick' if args.quick else 'full'
    size = task[mode]
    runs = task['runs']
    total = len(runs) + 1
    work_dir = args.work_dir or osp.join(
        'work_dirs', 'akd_demo', args.task + ('_quick' if args.quick else ''))
    default_data = 'data/shapes' if args.task == 'seg' else 'data/cifar-like'
    data_root = args.data or (osp.join(work_dir, 'data')
                              if args.quick else default_data)
    os.makedirs(work_dir, exist_ok=True)
    start = time.perf_counter()

    say(f"1/{total} generating the {task['data']} dataset in {data_root}")
    num_train, num_val = generate(args.task, size, data_root, args.seed)
    data_root = osp.abspath(data_root) + '/'

    results: Dict[str, RunResult] = {}
    for step, run in enumerate(runs, start=2):
        name = run['name']
        options = run_options(task, size, data_root, args.seed, run)
        for key, source in run['checkpoints'].items():
            options[key] = results[source].checkpoint
        length = ('its epochs' if task['by_epoch'] else
                  f"{options['train_cfg.max_iters']} iterations")
        say(f"{step}/{total} training {run['label']} ({length}) -> "
            f'{osp.join(work_dir, name)}')
        results[name] = train(
            name,
            run['config'],
            osp.join(work_dir, name),
            options,
            echo=lambda line, n=name: progress(n, line))
        value = results[name].metrics.get(task['metric'], float('nan'))
        say(f"{run['label']}: {task['metric']} {value:.2f} "
            f'({results[name].wall_seconds:.0f} s)')

    import torch
    meta = dict(
        task=args.task,
        mode=mode,
        seed=args.seed,
        data=task['data'],
        data_root=data_root,
        num_train=num_train,
        num_val=num_val,
        machine=f'{platform.processor() or platform.machine()}, '
        f'{os.cpu_count()} CPU cores, torch {torch.__version__}, '
        f'{torch.get_num_threads()} threads',
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
    with open(osp.join(work_dir, 'results.json'), 'w') as f:
        json.dump(payload, f, indent=2)
    plot(results, task, osp.join(work_dir, 'curves.png'))
    print()
    print(report)
    say(f'wrote {work_dir}/results.md, results.json and curves.png '
        f'in {meta["total_seconds"] / 60:.1f} min')


if __name__ == '__main__':
    main()
