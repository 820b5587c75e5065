# Copyright (c) mmakd contributors. All rights reserved.
"""mmakd's demo: a real teacher -> student distillation on CPU, in minutes.

On the synthetic shapes dataset (generated here; COCO and Cityscapes cannot
be downloaded everywhere) it

1. trains a teacher from scratch,
2. trains the student alone,
3. trains the student with the base distiller (CWD on logits),
4. trains it with AKD (the same CWD plus Avatars),

each with ``tools/train.py`` through the real MMSegmentation (or
MMDetection) dataset classes, pipelines and metrics, and writes
``results.md``, ``results.json`` and ``curves.png`` into the work directory.
All numbers are measured on synthetic data, and say so.

    python tools/demo.py                       # ~15 min on 2 CPU cores
    python tools/demo.py --quick --work-dir DIR  # < 3 min, same files
"""
import argparse
import json
import os
import os.path as osp
import platform
import sys
import time
from typing import Any, Dict

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)

from mmakd.apis import RunResult, train  # noqa: E402
from mmakd.datasets.shapes import generate_shapes  # noqa: E402

DEMO = 'configs/akd/demo'
TASKS: Dict[str, Dict[str, Any]] = dict(
    seg=dict(
        teacher=f'{DEMO}/pspnet_r18-w32_1xb8-1600it_shapes-128.py',
        student=f'{DEMO}/pspnet_r18-w8_1xb8-600it_shapes-128.py',
        cwd=f'{DEMO}/cwd_logits_pspnet-r18-w32_pspnet-r18-w8_1xb8-600it_'
        'shapes-128.py',
        akd=f'{DEMO}/akd_cwd_logits_pspnet-r18-w32_pspnet-r18-w8_1xb8-600it_'
        'shapes-128.py',
        metric='mIoU',
        task_loss='decode.loss_ce',
        full=dict(teacher_iters=1600, student_iters=600, num_train=400,
                  num_val=100, log_interval=20),
        quick=dict(teacher_iters=40, student_iters=30, num_train=48,
                   num_val=16, log_interval=10)),
)
RUNS = ('teacher', 'student', 'cwd', 'akd')
LABELS = dict(
    teacher='teacher', student='student alone', cwd='student + CWD',
    akd='student + AKD (CWD + Avatars)')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Distil a teacher into a student with and without AKD '
        'on synthetic data, on CPU.')
    parser.add_argument('--task', choices=sorted(TASKS), default='seg')
    parser.add_argument('--quick', action='store_true',
                        help='very few iterations (< 3 min): a smoke run')
    parser.add_argument('--work-dir', default=None,
                        help='default: work_dirs/akd_demo/<task>[_quick]')
    parser.add_argument('--data', default=None,
                        help='dataset folder (default: data/shapes, or '
                        'WORK_DIR/data with --quick)')
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args()


def say(message: str) -> None:
    print(f'[demo] {message}', flush=True)


def run_options(task: Dict[str, Any], size: Dict[str, Any], data_root: str,
                seed: int, iters: int) -> Dict[str, Any]:
    """--cfg-options for one run: data location, length, seed."""
    options: Dict[str, Any] = {'randomness.seed': seed}
    for split in ('train', 'val', 'test'):
        options[f'{split}_dataloader.dataset.data_root'] = data_root
    options.update({
        'train_cfg.max_iters': iters,
        'train_cfg.val_interval': iters,
        'param_scheduler.0.end': iters,
        'default_hooks.checkpoint.interval': iters,
        'default_hooks.logger.interval': size['log_interval'],
    })
    return options


def markdown(results: Dict[str, RunResult], metric: str, meta: Dict) -> str:
    lines = [
        f"# mmakd demo ({meta['task']}, {meta['mode']} run)",
        '',
        f"Synthetic data: the generated shapes dataset "
        f"({meta['num_train']} training and {meta['num_val']} validation "
        f"images, 128x128), not COCO or Cityscapes. Machine: "
        f"{meta['machine']}. One seed ({meta['seed']}); for a claim, use "
        '`tools/reproduce.py` over several seeds.',
        '',
        f'| run | {metric} (val) | s / iter | iterations | total time (s) |',
        '|---|---|---|---|---|',
    ]
    for name in RUNS:
        r = results[name]
        iters = r.train_log[-1]['iter'] if r.train_log else 0
        lines.append(f'| {LABELS[name]} | {r.metrics.get(metric, float("nan")):.2f} '
                     f'| {r.sec_per_iter:.3f} | {iters} '
                     f'| {r.wall_seconds:.0f} |')
    lines += ['', 'Commands (re-run any step by hand):', '']
    lines += [f'- {name}: `{" ".join(results[name].command[1:])}`'
              for name in RUNS]
    return '\n'.join(lines) + '\n'


def plot(results: Dict[str, RunResult], task: Dict[str, Any],
         path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name in RUNS:
        log = results[name].train_log
        key = task['task_loss'] if name in ('teacher', 'student') \
            else f"student.{task['task_loss']}"
        steps = [r['iter'] for r in log if key in r]
        axes[0].plot(steps, [r[key] for r in log if key in r],
                     label=LABELS[name])
        if name in ('cwd', 'akd'):
            dkey = 'distill.loss_cwd'
            axes[1].plot([r['iter'] for r in log if dkey in r],
                         [r[dkey] for r in log if dkey in r],
                         label=LABELS[name])
    axes[0].set_title(f"task loss ({task['task_loss']})")
    axes[1].set_title('distillation loss (CWD)')
    for ax in axes:
        ax.set_xlabel('iteration')
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle('mmakd demo on synthetic shapes data')
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    args = parse_args()
    task = TASKS[args.task]
    mode = 'quick' if args.quick else 'full'
    size = task[mode]
    work_dir = args.work_dir or osp.join(
        'work_dirs', 'akd_demo', args.task + ('_quick' if args.quick else ''))
    data_root = args.data or (osp.join(work_dir, 'data')
                              if args.quick else 'data/shapes')
    os.makedirs(work_dir, exist_ok=True)
    start = time.perf_counter()

    say(f'1/5 generating the synthetic shapes dataset in {data_root}')
    generate_shapes(data_root, num_train=size['num_train'],
                    num_val=size['num_val'], size=128, seed=args.seed)
    data_root = osp.abspath(data_root) + '/'

    results: Dict[str, RunResult] = {}
    for step, name in enumerate(RUNS, start=2):
        iters = size['teacher_iters' if name == 'teacher' else
                     'student_iters']
        options = run_options(task, size, data_root, args.seed, iters)
        if name in ('cwd', 'akd'):
            options['model.teacher_ckpt'] = results['teacher'].checkpoint
        say(f'{step}/5 training {LABELS[name]} ({iters} iterations) -> '
            f'{osp.join(work_dir, name)}')
        results[name] = train(
            name, task[name], osp.join(work_dir, name), options,
            echo=lambda line, n=name: print(f'  [{n}] {line[line.find("Iter"):]}'
                                            if 'Iter' in line else
                                            f'  [{n}] {line}', flush=True))
        value = results[name].metrics.get(task['metric'], float('nan'))
        say(f'{LABELS[name]}: {task["metric"]} {value:.2f} '
            f'({results[name].wall_seconds:.0f} s)')

    import torch
    meta = dict(
        task=args.task, mode=mode, seed=args.seed, data='synthetic shapes',
        data_root=data_root, num_train=size['num_train'],
        num_val=size['num_val'],
        machine=f'{platform.processor() or platform.machine()}, '
        f'{os.cpu_count()} CPU cores, torch {torch.__version__}, '
        f'{torch.get_num_threads()} threads',
        total_seconds=time.perf_counter() - start)
    report = markdown(results, task['metric'], meta)
    with open(osp.join(work_dir, 'results.md'), 'w') as f:
        f.write(report)
    payload = {name: results[name].to_dict(logs=True) for name in RUNS}
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
