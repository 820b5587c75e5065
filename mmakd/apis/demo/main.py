# Copyright (c) mmakd contributors. All rights reserved.
"""The demo's entry: the tasks of a command line, one after the other."""
import os.path as osp
import time
from typing import List, Optional

from .ensemble import run_ensemble
from .runs import run_task, say

__all__ = ['run_demo']


def run_demo(task: str = 'all',
             quick: bool = False,
             work_dir: Optional[str] = None,
             data: Optional[str] = None,
             seed: int = 0) -> List[str]:
    """Run ``tools/demo.py --task TASK`` and print every task's report.

    Args:
        task (str): A key of :data:`TASKS`, ``'ensemble'``, or ``'all'``
            (``det`` then ``seg``).
        quick (bool): Very few iterations: a smoke run.
        work_dir (str, optional): Where the runs and results go (default:
            ``work_dirs/akd_demo/<task>[_quick]``); with ``task='all'``,
            each task writes into ``work_dir/<task>``.
        data (str, optional): The dataset folder (default: ``data/shapes``
            or ``data/cifar-like``, ``WORK_DIR/data`` when ``quick``); with
            ``task='all'``, det and seg share it.
        seed (int): The seed of the data and of every run.

    Returns:
        list[str]: The markdown report of each task.
    """
    names = ['det', 'seg'] if task == 'all' else [task]
    suffix = '_quick' if quick else ''
    start = time.perf_counter()
    reports = []
    for name in names:
        if work_dir is None:
            task_dir = osp.join('work_dirs', 'akd_demo', name + suffix)
        elif task == 'all':
            task_dir = osp.join(work_dir, name)
        else:
            task_dir = work_dir
        task_data = data
        if task_data is None and quick and task == 'all':
            task_data = osp.join(work_dir or osp.dirname(task_dir), 'data')
        # relative to the folder the demo was started in (the runs
        # themselves run in the repository)
        task_dir = osp.abspath(task_dir)
        task_data = osp.abspath(task_data) if task_data else task_data
        run = run_ensemble if name == 'ensemble' else run_task
        reports.append(run(name, quick, task_dir, task_data, seed))
    for report in reports:
        print()
        print(report)
    say(f'{"+".join(names)} done in '
        f'{(time.perf_counter() - start) / 60:.1f} min (synthetic data)')
    return reports
