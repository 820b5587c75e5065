# Copyright (c) mmakd contributors. All rights reserved.
"""The fused-target figure merges reports by perturbation and K and draws
every metric of every perturbation asked for."""
import json
import subprocess
import sys

import pytest

from mmakd.apis.fused_target_plot import merge_rows, plot_fused_target


def _report(name, ks):
    stat = dict(mean=0.1, std=0.01)
    rows = [
        dict(
            num_avatars=k,
            raw=dict(mean=0.3 / k**0.5, std=0.01),
            standardized=stat,
            cwd_kl_raw=stat,
            cwd_kl_standardized=stat,
            raw_formula=dict(mean=0.3 / k**0.5, std=0.0)) for k in ks
    ]
    return dict(results=[dict(perturbation=name, rows=rows)])


def test_merge_rows_joins_reports_and_sorts_k():
    merged = merge_rows([_report('a', [4, 1]), _report('a', [16])])
    assert [r['num_avatars'] for r in merged['a']] == [1, 4, 16]


def test_plot_writes_a_png_with_every_curve(tmp_path):
    path = tmp_path / 'fig.png'
    drawn = plot_fused_target([_report('a', [1, 2, 4]),
                               _report('b', [1, 8])], str(path))
    assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert sorted(drawn) == sorted([
        (n, m, k) for n, k in (('a', 3), ('b', 2))
        for m in ('raw', 'standardized', 'cwd_kl_raw', 'cwd_kl_standardized')
    ])
    with pytest.raises(KeyError, match="no results for \\['c'\\]"):
        plot_fused_target([_report('a', [1])], str(path), ['c'])


@pytest.mark.slow
def test_cli(tmp_path):
    report = tmp_path / 'r.json'
    report.write_text(json.dumps(_report('AvatarDropout(p=0.1)', [1, 2])))
    out = tmp_path / 'f.png'
    proc = subprocess.run([
        sys.executable, 'tools/analysis_tools/plot_fused_target.py',
        str(report), '--out',
        str(out)
    ],
                          capture_output=True,
                          text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert '1 perturbations, 8 points' in proc.stdout and out.exists()
    bad = subprocess.run([
        sys.executable, 'tools/analysis_tools/plot_fused_target.py',
        str(report), '--out',
        str(out), '--perturbation', 'X'
    ],
                         capture_output=True,
                         text=True,
                         timeout=120)
    assert bad.returncode == 2 and 'no results for' in bad.stderr
