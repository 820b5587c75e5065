# Copyright (c) mmakd contributors. All rights reserved.
"""Plot training curves of distillation losses and Avatar weights.

    python tools/analysis_tools/plot_logs.py WORK_DIR [WORK_DIR ...] \
        --keys 'distill.loss_*' 'distill.akd.*.w[0-9]*' --out curves.png \
        [--legend cwd akd]

Each WORK_DIR is a training work directory (its newest
``*/vis_data/scalars.json`` is read) or a ``scalars.json`` file. Each key
pattern (shell-style, matched against the logged names) gets one panel;
every run and matching key is one line.
"""
import argparse
import fnmatch
import os.path as osp
from typing import Dict, List

from mmakd.apis import read_scalars


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        'logs', nargs='+', help='work directories or scalars.json files')
    parser.add_argument(
        '--keys',
        nargs='+',
        default=['distill.loss_*', 'distill.akd.*.w[0-9]*'],
        help='patterns of logged keys, one panel each')
    parser.add_argument('--legend', nargs='+', help='a name per log')
    parser.add_argument('--out', required=True, help='output image')
    parser.add_argument('--title', default=None)
    return parser.parse_args()


def load(path: str) -> List[Dict]:
    if osp.isdir(path):
        return read_scalars(path)
    import json
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def main() -> None:
    args = parse_args()
    names = args.legend or [osp.basename(osp.normpath(p)) for p in args.logs]
    if len(names) != len(args.logs):
        raise ValueError('--legend needs one name per log')
    runs = {
        name: [r for r in load(p) if 'loss' in r or 'lr' in r]
        for name, p in zip(names, args.logs)
    }
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(
        1, len(args.keys), figsize=(5.5 * len(args.keys), 4), squeeze=False)
    plotted = 0
    for ax, pattern in zip(axes[0], args.keys):
        for name, records in runs.items():
            keys = sorted(
                {k
                 for r in records
                 for k in r if fnmatch.fnmatch(k, pattern)})
            for key in keys:
                xs = [
                    r.get('iter', r.get('step')) for r in records if key in r
                ]
                ys = [r[key] for r in records if key in r]
                label = key if len(runs) == 1 else f'{name}: {key}'
                ax.plot(xs, ys, label=label, linewidth=1.2)
                plotted += 1
        ax.set_title(pattern)
        ax.set_xlabel('iteration')
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    if not plotted:
        raise KeyError(f'no logged key matches {args.keys}')
    if args.title:
        fig.suptitle(args.title)
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f'wrote {args.out} ({plotted} curves)')


if __name__ == '__main__':
    main()
