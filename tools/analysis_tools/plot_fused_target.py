# Copyright (c) mmakd contributors. All rights reserved.
"""Plot the fused target's distance from the teacher against K, from the
JSON reports of fused_target_distance.py
(:func:`mmakd.apis.fused_target_plot.plot_fused_target`).

    python tools/analysis_tools/plot_fused_target.py REPORT.json \
        [MORE.json ...] --out FIGURE.png [--perturbation NAME ...] \
        [--title TEXT]
"""
import argparse
import json
import os
import sys

sys.path.insert(
    0,
    os.path.dirname(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from mmakd.apis.fused_target_plot import plot_fused_target  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('reports', nargs='+', help='JSON reports')
    parser.add_argument('--out', required=True, help='the PNG to write')
    parser.add_argument(
        '--perturbation',
        action='append',
        default=[],
        help="e.g. 'AvatarDropout(p=0.1)' (repeatable; default: all)")
    parser.add_argument('--title', default='')
    args = parser.parse_args()
    reports = []
    for path in args.reports:
        with open(path) as f:
            reports.append(json.load(f))
    try:
        drawn = plot_fused_target(reports, args.out, args.perturbation,
                                  args.title)
    except KeyError as err:
        parser.error(str(err.args[0]))
    print(f'wrote {args.out}: {len({d[0] for d in drawn})} perturbations, '
          f'{sum(d[2] for d in drawn)} points')


if __name__ == '__main__':
    main()
