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


@pytest.mark.parametrize('name', ['det', 'seg', 'mgkd'])
def test_run_task_chains_the_runs_and_writes_its_files(name, tmp_path,
                                                       monkeypatch):
    """The demo's orchestration without training (the end-to-end runs are
    `slow`): every run of the task, in order, on the data it generated,
    each later run given the checkpoint of the run it names, and the
    results files written. ``train`` is replaced by a recorder."""
    import json

    from mmakd.apis import RunResult, demo
    from mmakd.apis.demo import runs
    task = demo.TASKS[name]
    calls = []

    def generate(task_name, size, root, seed):
        calls.append(('generate', task_name, root, seed))
        return 6, 3

    def train(run_name, config, work_dir, options=None, **kwargs):
        calls.append(('train', run_name, config, work_dir, dict(options)))
        return RunResult(
            name=run_name,
            config=config,
            work_dir=work_dir,
            command=['python', 'tools/train.py', config],
            metrics={task['metric']: 0.5},
            sec_per_iter=0.1,
            wall_seconds=2.0,
            checkpoint=f'{work_dir}/iter_1.pth',
            train_log=[dict(iter=1, loss=1.0)])

    monkeypatch.setattr(runs, 'generate', generate)
    monkeypatch.setattr(runs, 'train', train)
    work = tmp_path / name
    report = runs.run_task(name, True, str(work), None, 3)

    data = str(work / 'data')
    assert calls[0] == ('generate', name, data, 3)
    trained = calls[1:]
    assert [c[1] for c in trained] == [r['name'] for r in task['runs']]
    for run, (_, run_name, config, work_dir,
              options) in zip(task['runs'], trained):
        assert config == run['config']
        assert work_dir == str(work / run_name)
        assert options['randomness.seed'] == 3
        assert data + '/' in options.values()
        for key, source in run['checkpoints'].items():
            assert options[key] == str(work / source / 'iter_1.pth')
    assert any(run['checkpoints'] for run in task['runs'])
    results = json.loads((work / 'results.json').read_text())
    assert set(results) == {r['name']
                            for r in task['runs']
                            } | {'meta', 'metric', 'metric_scale'}
    assert results['meta']['num_train'] == 6
    assert (work / 'results.md').read_text() == report
    assert (work / 'curves.png').read_bytes()[:4] == b'\x89PNG'
