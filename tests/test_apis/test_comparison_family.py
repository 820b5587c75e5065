# Copyright (c) mmakd contributors. All rights reserved.
"""Holm's adjustment and the family table of several comparisons."""
import json
import os.path as osp

import pytest

from mmakd.apis import paired_summary
from mmakd.apis.comparison_family import family_rows, holm_adjust
from helpers import REPO, load_tool


def test_holm_golden():
    # m = 4, sorted 0.01, 0.02, 0.03, 0.5: 4 * 0.01, 3 * 0.02, then the
    # running maximum keeps 0.06 over 2 * 0.03, and 1 * 0.5
    assert holm_adjust([0.03, 0.5, 0.01,
                        0.02]) == pytest.approx([0.06, 0.5, 0.04, 0.06])
    assert holm_adjust([0.4, 0.6]) == pytest.approx([0.8, 0.8])
    # 3 * 0.7 > 1: capped at 1, and the running maximum keeps it
    assert holm_adjust([0.9, 0.8, 0.7]) == pytest.approx([1.0, 1.0, 1.0])
    assert holm_adjust([0.2, 0.1]) == pytest.approx([0.2, 0.2])
    assert holm_adjust([]) == []


def _report(a, b, names=('cwd', 'x'), scale=100.0):
    """A report as tools/reproduce.py writes it: the metric's raw values
    times ``scale``, and their summary."""
    a, b = [v * scale for v in a], [v * scale for v in b]
    return dict(
        metric='coco/bbox_mAP',
        scale=scale,
        names=list(names),
        seeds=list(range(200, 200 + len(a))),
        values={
            names[0]: a,
            names[1]: b
        },
        summary=paired_summary(a, b))


def test_family_rows_and_cli(tmp_path):
    reports = dict(
        views=_report([0.060, 0.061, 0.058], [0.062, 0.064, 0.061]),
        mc=_report([0.060, 0.061, 0.058], [0.059, 0.062, 0.058]))
    rows = family_rows(reports)
    raw = [r['p'] for r in rows]
    assert [r['p_holm'] for r in rows] == pytest.approx(holm_adjust(raw))
    views = rows[0]
    assert views['diff'] == pytest.approx(0.26666666, rel=1e-6)  # points
    assert views['a'] == pytest.approx(5.9666666, rel=1e-6)
    paths = []
    for name, report in reports.items():
        path = tmp_path / f'{name}.json'
        path.write_text(json.dumps(report))
        paths.append(f'{name}={path}')
    tool = load_tool('tools/analysis_tools/compare_family.py', 'family')
    tool.main([*paths, '--out', str(tmp_path / 'out')])
    table = (tmp_path / 'out' / 'family.md').read_text()
    assert '| views: x vs cwd | coco/bbox_mAP | 3 (200-202) | 5.97 | 6.23 | ' \
        '+0.27 ± 0.06 |' in table
    with pytest.raises(SystemExit):
        tool.main(['views', '--out', str(tmp_path / 'o2')])


def test_family_rows_read_reproduce_reports_in_their_units():
    # a committed report of tools/reproduce.py (bbox mAP x100): the row
    # shows the numbers its reproduce.md shows, not 100 times them
    report = osp.join(REPO,
                      'docs/results/inference-avatars/selection-det/views')
    with open(f'{report}/reproduce.json') as f:
        row, = family_rows(dict(views=json.load(f)))
    with open(f'{report}/reproduce.md') as f:
        md = f.read()
    assert f'| mean ± std | {row["a"]:.2f} ± ' in md
    assert f'Paired difference V6 - V2: {row["diff"]:+.3f}, 95% CI ' \
        f'[{row["ci95"][0]:+.3f}, {row["ci95"][1]:+.3f}]' in md
    assert 5 < row['a'] < 7  # points
