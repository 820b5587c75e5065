# Copyright (c) mmakd contributors. All rights reserved.
"""Is B better than A? Train both over several seeds and test the difference.

    python tools/reproduce.py CONFIG_A CONFIG_B --seeds 5 \
        [--metric mIoU] [--work-dir DIR] [--cfg-options k=v ...] \
        [--options-a k=v ...] [--options-b k=v ...] [--report-dir DIR]

For every seed it trains A and then B with ``tools/train.py`` (same seed,
same ``--cfg-options``), reads the last validation metric, and reports the
mean ± standard deviation of each, the paired difference B - A with its
95% confidence interval, and a paired t-test, so that a claim like "AKD
beats CWD" is tested rather than asserted. Writes ``reproduce.md`` and
``reproduce.json`` into the report directory (default: the work directory),
and with ``--report-dir`` also every run's training log and config under
``REPORT_DIR/logs/`` (no checkpoints), so that the report can be kept in the
repository. COCO metrics (fractions) are reported in points (x100).
"""
import argparse
import json
import os
import os.path as osp
import sys
import time
from typing import Dict, List

from mmengine.config import DictAction

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)

from mmakd.apis import paired_summary, train  # noqa: E402
from mmakd.apis.experiment import machine_description  # noqa: E402
from mmakd.apis.experiment import portable_path, portable_text  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Train two configs over N seeds; compare them.')
    parser.add_argument('config_a', help='baseline config')
    parser.add_argument('config_b', help='candidate config')
    parser.add_argument(
        '--seeds', type=int, default=3, help='number of seeds (0..N-1)')
    parser.add_argument('--first-seed', type=int, default=0)
    parser.add_argument(
        '--metric',
        default=None,
        help='validation metric key (default: mIoU, '
        'coco/bbox_mAP or accuracy/top1, whichever the '
        'runs report)')
    parser.add_argument(
        '--names', nargs=2, default=None, metavar=('NAME_A', 'NAME_B'))
    parser.add_argument('--work-dir', default='work_dirs/reproduce')
    parser.add_argument(
        '--report-dir',
        default=None,
        help='where reproduce.md/.json and the runs\' logs and configs go '
        '(default: the work directory, logs left in the runs\' folders)')
    parser.add_argument(
        '--reuse',
        action='store_true',
        help='read back runs already finished in the work directory with '
        'the same command instead of training them again (e.g. to add '
        'seeds to a report)')
    parser.add_argument(
        '--scale',
        type=float,
        default=None,
        help='multiply the metric by this in the report (default: 100 for '
        'coco/* metrics, which are fractions, else 1)')
    parser.add_argument(
        '--note',
        default='',
        help='text put under the table, e.g. "synthetic '
        'shapes data"')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        default={},
        help='overrides applied to both configs, xxx=yyy')
    parser.add_argument(
        '--options-a',
        nargs='+',
        action=DictAction,
        default={},
        help='overrides for config A only (after --cfg-options)')
    parser.add_argument(
        '--options-b',
        nargs='+',
        action=DictAction,
        default={},
        help='overrides for config B only, e.g. B = A with one setting '
        'changed')
    return parser.parse_args()


def _options(options: Dict) -> str:
    return ' '.join(f'{k}={v}' for k, v in options.items()) or '-'


def pick_metric(metrics: Dict[str, float], wanted: str = None) -> str:
    if wanted:
        if wanted not in metrics:
            raise KeyError(f'metric {wanted!r} not among {sorted(metrics)}')
        return wanted
    for key in ('mIoU', 'coco/bbox_mAP', 'accuracy/top1'):
        if key in metrics:
            return key
    raise KeyError(f'give --metric, one of {sorted(metrics)}')


def metric_scale(metric: str, scale: float = None) -> float:
    """The report's unit: COCO metrics are fractions, shown in points."""
    if scale is not None:
        return scale
    return 100.0 if metric.startswith('coco/') else 1.0


def keep_logs(work_dir: str, log_dir: str, name: str) -> None:
    """Copy a run's training log and dumped config into ``log_dir``, with
    the machine's paths made portable (``portable_text``: relative to the
    repository, placeholders such as ``<tmp>`` outside it)."""
    from glob import glob
    os.makedirs(log_dir, exist_ok=True)
    copies = []
    logs = sorted(glob(osp.join(work_dir, '*', '*.log')))
    if logs:
        copies.append((logs[-1], f'{name}.log'))
    configs = sorted(glob(osp.join(work_dir, '*.py')))
    if configs:
        copies.append((configs[-1], f'{name}-config.py.txt'))
    for source, target in copies:
        with open(source, encoding='utf-8', errors='replace') as f:
            text = portable_text(f.read())
        with open(osp.join(log_dir, target), 'w', encoding='utf-8') as f:
            f.write(text)


def main() -> None:
    args = parse_args()
    names = args.names or [
        osp.splitext(osp.basename(p))[0]
        for p in (args.config_a, args.config_b)
    ]
    os.makedirs(args.work_dir, exist_ok=True)
    report_dir = args.report_dir or args.work_dir
    os.makedirs(report_dir, exist_ok=True)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    values: Dict[str, List[float]] = {names[0]: [], names[1]: []}
    runs = []
    metric = args.metric
    start = time.perf_counter()
    for i, seed in enumerate(seeds):
        for name, config, own in zip(names, (args.config_a, args.config_b),
                                     (args.options_a, args.options_b)):
            options = dict(args.cfg_options)
            options.update(own)
            options['randomness.seed'] = seed
            work_dir = osp.join(args.work_dir, f'{name}_seed{seed}')
            print(
                f'[reproduce] seed {seed} ({i + 1}/{len(seeds)}): '
                f'training {name}',
                flush=True)
            result = train(
                f'{name}_seed{seed}',
                config,
                work_dir,
                options,
                echo=lambda line: print(
                    '   ',
                    line[line.find('Iter'):] if 'Iter' in line else line,
                    flush=True),
                reuse=args.reuse)
            metric = pick_metric(result.metrics, metric)
            scale = metric_scale(metric, args.scale)
            values[name].append(result.metrics[metric] * scale)
            runs.append(dict(result.to_dict(logs=True), name=name, seed=seed))
            if args.report_dir:
                keep_logs(work_dir, osp.join(report_dir, 'logs'),
                          f'{name}_seed{seed}')
            print(
                f'[reproduce] {name} seed {seed}: {metric} '
                f'{values[name][-1]:.3f}',
                flush=True)

    summary = paired_summary(values[names[0]], values[names[1]])
    a, b, d = summary['a'], summary['b'], summary['diff']
    unit = f' (x{scale:g})' if scale != 1 else ''
    lines = [
        f'# {names[1]} vs {names[0]}: {metric}{unit} over {len(seeds)} '
        'seeds', '', f'| seed | {names[0]} | {names[1]} | difference |',
        '|---|---|---|---|'
    ]
    for j, seed in enumerate(seeds):
        x, y = values[names[0]][j], values[names[1]][j]
        lines.append(f'| {seed} | {x:.2f} | {y:.2f} | {y - x:+.2f} |')
    lines.append(f'| mean ± std | {a["mean"]:.2f} ± {a["std"]:.2f} | '
                 f'{b["mean"]:.2f} ± {b["std"]:.2f} | '
                 f'{d["mean"]:+.2f} ± {d["std"]:.2f} |')
    lines.append('')
    if 'p_value' in summary:
        lo, hi = summary['ci95']
        verdict = ('significant at the 5% level' if summary['p_value'] < 0.05
                   else 'not significant at the 5% level')
        lines.append(f'Paired difference {names[1]} - {names[0]}: '
                     f'{d["mean"]:+.3f}, 95% CI [{lo:+.3f}, {hi:+.3f}], '
                     f't = {summary["t"]:.2f}, p = {summary["p_value"]:.3f} '
                     f'({verdict}).')
    else:
        lines.append('One seed: no test; use --seeds 3 or more.')
    machine = machine_description()
    config_a, config_b = (
        portable_path(osp.abspath(c)) for c in (args.config_a, args.config_b))
    logs = (
        f'`{portable_path(osp.abspath(report_dir))}/logs/`'
        if args.report_dir else
        f'`{portable_path(osp.abspath(args.work_dir))}/<name>_seed<seed>/`')
    lines += [
        '', f'Configs: `{config_a}` (A), `{config_b}` (B); '
        f'common options: `{_options(args.cfg_options)}`; A only: '
        f'`{_options(args.options_a)}`; B only: `{_options(args.options_b)}`. '
        f'Machine: {machine}. Total time '
        f'{(time.perf_counter() - start) / 60:.1f} min. Logs: {logs}.'
    ]
    if args.note:
        lines += ['', args.note]
    report = '\n'.join(lines) + '\n'
    with open(osp.join(report_dir, 'reproduce.md'), 'w') as f:
        f.write(report)
    with open(osp.join(report_dir, 'reproduce.json'), 'w') as f:
        json.dump(
            dict(
                metric=metric,
                scale=scale,
                configs=[config_a, config_b],
                names=names,
                seeds=seeds,
                values=values,
                summary=summary,
                runs=runs,
                machine=machine,
                note=args.note),
            f,
            indent=2)
    print()
    print(report)


if __name__ == '__main__':
    main()
