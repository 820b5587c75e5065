# Copyright (c) mmakd contributors. All rights reserved.
"""One demo task end to end: its data, its training runs, its results."""
import json
import os
import os.path as osp
import time
from typing import Any, Dict, Optional

from mmakd.apis.experiment import (RunResult, machine_description,
                                   portable_path, train)
from .tables import markdown, metric_value, plot
from .tasks import TASKS, generate, run_options

__all__ = ['say', 'progress', 'run_task']


def say(message: str) -> None:
    """Print one of the demo's own progress lines."""
    print(f'[demo] {message}', flush=True)


def progress(name: str, line: str) -> None:
    """One of MMEngine's log lines, without its timestamp prefix."""
    print(f'  [{name}] {line.split(" - INFO - ", 1)[-1]}', flush=True)


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
