# Copyright (c) mmakd contributors. All rights reserved.
"""Several ``tools/reproduce.py`` comparisons against one baseline, as a
family with Holm-adjusted p-values.

    python tools/analysis_tools/compare_family.py \
        NAME=path/to/reproduce.json [NAME=...] --out DIR

Writes ``family.md`` and ``family.json`` into ``--out``: per comparison
the baseline's and the candidate's means, their paired difference (mean ±
std), its 95 % confidence interval, the paired t-test's p and Holm's
adjusted p over all the comparisons given
(:mod:`mmakd.apis.comparison_family`).
"""
import argparse
import json
import os
import os.path as osp
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)

from mmakd.apis.comparison_family import family_markdown  # noqa: E402
from mmakd.apis.comparison_family import family_rows  # noqa: E402
from mmakd.apis.comparison_family import load_reports  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('reports', nargs='+', metavar='NAME=REPORT')
    parser.add_argument('--out', required=True)
    args = parser.parse_args(argv)
    paths = {}
    for item in args.reports:
        name, sep, path = item.partition('=')
        if not sep or not name or not path:
            parser.error(f'expected NAME=path/to/reproduce.json, got {item!r}')
        paths[name] = path
    rows = family_rows(load_reports(paths))
    os.makedirs(args.out, exist_ok=True)
    with open(osp.join(args.out, 'family.json'), 'w') as f:
        json.dump(dict(reports=paths, rows=rows), f, indent=2)
    table = family_markdown(rows)
    with open(osp.join(args.out, 'family.md'), 'w') as f:
        f.write(table)
    print(table, end='')


if __name__ == '__main__':
    main()
