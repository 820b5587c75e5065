# Copyright (c) mmakd contributors. All rights reserved.
"""What the demo's own summary (``results.md`` and the console table) says
beside its numbers."""
import pytest


@pytest.mark.parametrize('name', ['det', 'seg', 'mgkd'])
def test_summary_says_single_runs_rank_nothing(name):
    """Issue 24, point 8: a fresh clone on another machine measured other
    numbers (CWD and AKD swapped); the table says so beside itself."""
    from mmakd.apis import RunResult, demo
    task = demo.TASKS[name]
    results = {
        run['name']:
        RunResult(
            name=run['name'],
            config=run['config'],
            work_dir='w',
            command=['python', 'tools/train.py', run['config']],
            metrics={task['metric']: 0.05},
            sec_per_iter=0.1,
            wall_seconds=10.0)
        for run in task['runs']
    }
    meta = dict(
        task=name,
        mode='full',
        seed=0,
        data=task['data'],
        data_root='data/shapes/',
        num_train=10,
        num_val=5,
        image_size=128,
        machine='x',
        total_seconds=1.0)
    meta.update({k: v for k, v in task['full'].items() if k not in meta})
    md = demo.markdown(results, task, meta)
    table = md.index('| run |')
    note = md.index('One run per method ranks nothing')
    assert note < table  # beside the table, not after the commands
    assert 'about half a point' in md
    assert 'from about iteration 40' in md
    assert ('teacher 8.50, student 4.80, CWD 6.30, AKD reference 6.40, '
            'AKD 5.90') in md
    assert '8.70 / 4.90 / 6.70 / 5.80 / 6.50' in md
