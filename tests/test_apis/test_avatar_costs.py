# Copyright (c) mmakd contributors. All rights reserved.
"""The AKD cost breakdown times what it names, and refuses a loss without
a fused form."""
import json
import subprocess
import sys

import pytest

from mmakd.apis.avatar_costs import PARTS, avatar_costs, markdown

CWD = dict(type='ChannelWiseDivergence', tau=1, loss_weight=10)
DROPOUT = dict(type='AvatarDropout', p=0.1)


def test_costs_per_k_and_part():
    result = avatar_costs([(2, 4, 6, 6), (2, 4, 3, 3)], [1, 3],
                          CWD,
                          DROPOUT,
                          iters=2,
                          warmup=0,
                          progress=False)
    assert set(result['ms']) == {1, 3}
    for ms in result['ms'].values():
        assert set(ms) == set(PARTS)
        assert all(v > 0 for v in ms.values())
    table = markdown(result)
    assert table.count('\n') == 4  # header, rule, one row per K
    assert table.splitlines()[2].startswith('| 1 |')


def test_a_loss_without_fused_form_is_refused():
    with pytest.raises(ValueError, match='L1Loss has no fused form'):
        avatar_costs([(2, 4, 3, 3)], [2],
                     dict(type='L1Loss'),
                     DROPOUT,
                     iters=1,
                     progress=False)


@pytest.mark.slow
def test_cli_writes_json_and_markdown(tmp_path):
    out = tmp_path / 'costs.json'
    md = tmp_path / 'costs.md'
    proc = subprocess.run([
        sys.executable, 'tools/analysis_tools/benchmark_avatar_costs.py',
        '--shapes', '2,4,6,6', '--num-avatars', '2', '--iters', '1',
        '--threads', '1', '--json',
        str(out), '--markdown',
        str(md)
    ],
                          capture_output=True,
                          text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert list(result['ms']) == ['2']
    assert result['shapes'] == [[2, 4, 6, 6]]
    assert md.read_text().startswith('| K | draw ms')
    bad = subprocess.run([
        sys.executable, 'tools/analysis_tools/benchmark_avatar_costs.py',
        '--shapes', '2x4'
    ],
                         capture_output=True,
                         text=True,
                         timeout=120)
    assert bad.returncode == 2 and 'N,C,H,W' in bad.stderr
