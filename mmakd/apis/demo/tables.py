# Copyright (c) mmakd contributors. All rights reserved.
"""What a demo task writes: its ``results.md`` table and ``curves.png``."""
from typing import Any, Dict, Optional

from mmakd.apis.experiment import RunResult, portable_command

__all__ = ['CROSS_MACHINE', 'metric_value', 'markdown', 'plot']

#: Printed beside every demo table (results.md and the console).
CROSS_MACHINE = (
    'Your numbers will differ from the README\'s by about half a point per '
    'run: within one machine runs are bit-identical, but on other CPU '
    'kernels the losses drift apart from about iteration 40. One run per '
    'method ranks nothing: a fresh clone of the detection demo on another '
    'machine printed teacher 8.50, student 4.80, CWD 6.30, AKD reference '
    '6.40, AKD 5.90 bbox mAP against the README\'s 8.70 / 4.90 / 6.70 / '
    '5.80 / 6.50 (CWD and AKD swapped).')


def metric_value(result: RunResult, task: Dict[str, Any]) -> float:
    """The task's metric as shown in tables (bbox mAP in points)."""
    value = result.metrics.get(task['metric'], float('nan'))
    return value * task.get('scale', 1)


def _length(result: RunResult, by_epoch: bool) -> str:
    """How long a run trained, as its table row shows it."""
    if not result.train_log:
        return '0'
    last = result.train_log[-1]
    if by_epoch:
        return f"{last.get('epoch', '?')} epochs ({last['iter']} it)"
    return str(last['iter'])


def markdown(results: Dict[str, RunResult], task: Dict[str, Any],
             meta: Dict) -> str:
    """``results.md``: the task's table, :data:`CROSS_MACHINE` beside it,
    then the command of every run."""
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
    """``curves.png``: every run's own and distillation loss."""
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
