# Copyright (c) mmakd contributors. All rights reserved.
"""``--task ensemble``: a real teacher ensemble against Avatars."""
import json
import os
import os.path as osp
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

from mmakd.apis.experiment import (REPO, _mean_std, machine_description,
                                   paired_summary, portable_command,
                                   portable_path, relative_path,
                                   to_cli_options, train)
from .runs import progress, say
from .tasks import DEMO, DET, SHAPES_DESC, TASKS, generate, run_options

__all__ = [
    'ENSEMBLE', 'ARMS', 'ensemble_summary', 'ensemble_markdown',
    'ensemble_options', 'run_ensemble'
]

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
    """One arm's values, s/iter, times and commands in a reproduce
    report."""
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
    """``mean ± std`` of ``values``, to two decimals."""
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
    """The teacher-ensemble study of docs/ensemble.md (``--task ensemble``).

    Trains the detection teacher from 4 seeds, then, with
    ``tools/reproduce.py`` over the student seeds (from 100), CWD from one
    teacher (seed 0), CWD from the mean of the 4 teachers
    (``MultiTeacherDistill``) and AKD with 4 Avatars of the one teacher;
    writes ``ensemble.md`` and ``ensemble.json``. Finished runs in
    ``work_dir`` are reused.

    Returns:
        str: The markdown report.
    """
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
