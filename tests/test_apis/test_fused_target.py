# Copyright (c) mmakd contributors. All rights reserved.
"""Distance of AKD's fused Avatar target from the teacher (Zhang et al., ACM
MM 2023, https://arxiv.org/abs/2305.02722): golden values from formulas
derived independently of the code, and the CLI on a random-weight
teacher."""
import json
import math
import os.path as osp

import pytest
import torch
import torch.nn.functional as F

from mmakd.apis.fused_target import (METRICS, cycled_strengths, draw_avatars,
                                     fused_target_distance, target_distances)
from mmakd.models.avatars import build_perturbation, standardize
from helpers import load_tool


def _teacher(seed: int = 0, shape=(2, 8, 8, 8)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g)


def _rms(values):
    return math.sqrt(sum(v * v for v in values) / len(values))


@pytest.mark.parametrize('k', [1, 4])
def test_inverted_dropout_equal_weights_matches_formula(k):
    """Inverted dropout, equal weights: ``A_k = T m_k / (1 - p)`` with
    ``m_k ~ Bernoulli(1 - p)`` element-wise, so each element of ``Abar - T``
    has variance ``T^2 p / (1 - p) / K`` and ``E||Abar - T||^2 = p / (1 - p)
    ||T||^2 / K``. At 400 draws the root mean square of the measured
    relative distance lies within 2 % of ``sqrt(p / (1 - p) / K)`` (its
    Monte Carlo error is about 0.4 % on these 1024 elements)."""
    p = 0.2
    out = fused_target_distance(
        _teacher(),
        dict(type='AvatarDropout', p=p),
        num_avatars=[k],
        repeats=400,
        seed=0,
        tau=None)
    (row, ) = out['rows']
    expected = math.sqrt(p / (1 - p) / k)
    assert _rms(row['raw']['values']) == pytest.approx(expected, rel=0.02)
    assert row['raw']['mean'] == pytest.approx(expected, rel=0.03)
    assert row['raw_formula']['mean'] == pytest.approx(expected, rel=1e-9)
    assert row['wmax_over_wmin']['mean'] == 1.0
    assert len(row['raw']['values']) == 400
    std = math.sqrt(
        sum((v - row['raw']['mean'])**2 for v in row['raw']['values']) / 399)
    assert row['raw']['std'] == pytest.approx(std)


def test_heterogeneous_dropout_equal_weights():
    """``p = (0.05, 0.4)``, equal weights 1/2: ``E||Abar - T||^2 / ||T||^2 =
    (0.05 / 0.95 + 0.4 / 0.6) / 4``."""
    out = fused_target_distance(
        _teacher(1),
        dict(type='AvatarDropout', p=(0.05, 0.4)),
        num_avatars=[2],
        repeats=400,
        tau=None)
    expected = math.sqrt((0.05 / 0.95 + 0.4 / 0.6) / 4)
    assert _rms(out['rows'][0]['raw']['values']) == pytest.approx(
        expected, rel=0.02)


@pytest.mark.parametrize('cfg', [
    dict(type='AvatarDropout', p=0.0),
    dict(type='AvatarGaussianNoise', std=0.0),
    dict(type='AvatarChannelDropout', p=(0.0, 0.0)),
])
def test_identity_at_k1_is_exactly_zero(cfg):
    out = fused_target_distance(
        _teacher(), cfg, num_avatars=[1], repeats=2, seed=3)
    row = out['rows'][0]
    for metric in METRICS:
        assert row[metric]['values'] == [0.0, 0.0], metric
    for space in ('raw', 'standardized'):  # the teacher's own softmaxes
        assert row[f'entropy_{space}']['mean'] == pytest.approx(
            out['reference'][f'entropy_{space}'], rel=1e-12)


def test_standardized_target_is_biased_towards_zero():
    """``T`` standardised per channel (mean 0, variance 1): a dropout Avatar
    has per-channel variance ``1 / (1 - p)``, so ``std(A_k) = sqrt(1 - p)
    A_k`` up to sampling error and ``E[std(A_k)] = sqrt(1 - p) T``. The
    standardised fused target is a shrunk teacher plus noise of variance
    ``(1 - p) p / (1 - p) / K = p / K`` per element:
    ``E||.||^2 / ||T||^2 = (1 - sqrt(1 - p))^2 + p / K``, which does not
    vanish as ``K`` grows, while the raw distance ``sqrt(p / (1 - p) / K)``
    does."""
    p, k = 0.2, 64
    teacher = standardize(_teacher(2, (8, 16, 16, 16)))
    out = fused_target_distance(
        teacher,
        dict(type='AvatarDropout', p=p),
        num_avatars=[k],
        repeats=3,
        tau=None)
    row = out['rows'][0]
    floor = 1 - math.sqrt(1 - p)
    assert row['standardized']['mean'] == pytest.approx(
        math.sqrt(floor**2 + p / k), rel=0.05)
    assert row['raw']['mean'] == pytest.approx(
        math.sqrt(p / (1 - p) / k), rel=0.05)
    assert row['standardized']['mean'] > 1.5 * row['raw']['mean']


def test_target_distances_by_hand():
    """Two given Avatars with weights (0.25, 0.75): raw and standardised
    distances from their definitions, and CWD's KL with
    ``F.kl_div``: ``KL(p_T || 0.25 p_1 + 0.75 p_2)`` per channel, averaged
    over the channels."""
    teacher = torch.tensor([[[[0.0, 1.0, 2.0]], [[1.0, -1.0, 0.5]]]],
                           dtype=torch.float64)
    a1 = teacher * torch.tensor([0.0, 2.0, 1.0])
    a2 = teacher + 0.5
    avatars = torch.stack([a1, a2])
    weights = torch.tensor([1.0, 3.0])  # normalised to (0.25, 0.75)
    out = target_distances(teacher, avatars, weights, cwd_tau=2.0)
    fused = 0.25 * a1 + 0.75 * a2
    assert out['raw'] == pytest.approx(
        float((fused - teacher).norm() / teacher.norm()), rel=1e-6)
    s_t = standardize(teacher)
    s_bar = 0.25 * standardize(a1) + 0.75 * standardize(a2)
    assert out['standardized'] == pytest.approx(
        float((s_bar - s_t).norm() / s_t.norm()), rel=1e-6)

    def kl(t, x1, x2):
        p_t = F.softmax(t.reshape(2, 3) / 2, dim=1)
        pbar = 0.25 * F.softmax(x1.reshape(2, 3) / 2, dim=1) + \
            0.75 * F.softmax(x2.reshape(2, 3) / 2, dim=1)
        return float(F.kl_div(pbar.log(), p_t, reduction='sum') / 2)

    assert out['cwd_kl_raw'] == pytest.approx(kl(teacher, a1, a2), rel=1e-5)
    pbar = 0.25 * F.softmax(a1.reshape(2, 3) / 2, dim=1) + \
        0.75 * F.softmax(a2.reshape(2, 3) / 2, dim=1)
    assert out['entropy_raw'] == pytest.approx(
        float(-(pbar * pbar.log()).sum() / 2), rel=1e-6)
    assert out['cwd_kl_standardized'] == pytest.approx(
        kl(s_t, standardize(a1), standardize(a2)), rel=1e-5)


def test_per_avatar_strengths_are_cycled():
    """Avatar ``k`` of ``p = (0.05, 0.1, 0.2, 0.4)`` cycled to ``K = 6``
    drops a share ``p_{k mod 4}`` of a teacher without zeros."""
    module = build_perturbation(
        dict(type='AvatarDropout', p=(0.05, 0.1, 0.2, 0.4)), 'p')
    assert cycled_strengths(module, 6) == [0.05, 0.1, 0.2, 0.4, 0.05, 0.1]
    teacher = torch.ones(4, 16, 16, 16)
    avatars = draw_avatars(module, teacher, 6,
                           torch.Generator().manual_seed(0))
    assert avatars.shape == (6, 4, 16, 16, 16)
    dropped = (avatars == 0).flatten(1).float().mean(1)
    assert dropped.tolist() == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.05, 0.1],
                                             abs=0.01)
    # the two rounds are independent draws
    assert not torch.equal(avatars[0], avatars[4])
    mix = build_perturbation([
        dict(type='AvatarDropout', p=0.1, num_avatars=2),
        dict(type='AvatarGaussianNoise', std=0.1)
    ], 'p')
    assert draw_avatars(mix, teacher, 5, None).shape[0] == 5
    assert cycled_strengths(mix, 5) is None


def test_seeded_per_k_and_reported():
    """The same (seed, K, repeat) draws the same Avatars whatever the
    other K; the report carries its settings."""
    teacher = _teacher()
    cfg = dict(type='AvatarDropout', p=(0.05, 0.1, 0.2, 0.4))
    a = fused_target_distance(teacher, cfg, num_avatars=[2, 8], repeats=2)
    b = fused_target_distance(teacher, cfg, num_avatars=[8], repeats=2)
    assert a['rows'][1] == b['rows'][0]
    c = fused_target_distance(teacher, cfg, num_avatars=[8], repeats=2, seed=1)
    assert c['rows'][0]['raw'] != b['rows'][0]['raw']
    assert a['perturbation'] == 'AvatarDropout(p=(0.05, 0.1, 0.2, 0.4))'
    assert a['rows'][0]['strengths'] == [0.05, 0.1]
    assert a['tau'] == 4.0 and a['shape'] == [2, 8, 8, 8]
    # heterogeneous strengths: AKD's weights favour the weak Avatars
    assert a['rows'][1]['wmax_over_wmin']['mean'] > 2
    weights = a['rows'][1]['weights_mean']
    assert len(weights) == 8 and sum(weights) == pytest.approx(1)
    assert weights[0] > weights[1] > weights[2] > weights[3]
    json.dumps(a)
    with pytest.raises(ValueError, match='N, C, H, W'):
        fused_target_distance(teacher[0], cfg)


DEMO_TEACHER = 'configs/akd/demo/retinanet_r18-w32_fpn-64_1xb8-2000it_' \
    'shapes-128.py'


def test_cli_on_random_teacher(tmp_path, shapes_root, repo_root):
    """The tool on the demo teacher with random weights and two generated
    validation images (a few seconds): tables, JSON and log without this
    machine's paths."""
    from mmengine.registry import init_default_scope

    from mmakd.registry import MODELS
    from mmakd.utils import load_config
    tool = load_tool('tools/analysis_tools/fused_target_distance.py',
                     'fused_target_distance_tool')
    cfg = load_config(osp.join(repo_root, DEMO_TEACHER))
    init_default_scope('mmdet')
    torch.manual_seed(0)
    ckpt = str(tmp_path / 'random.pth')
    torch.save({'state_dict': MODELS.build(cfg.model).state_dict()}, ckpt)
    out = tmp_path / 'out'
    tool.main([
        osp.join(repo_root, DEMO_TEACHER), ckpt, '--out',
        str(out), '--data-root', shapes_root, '--batch-size', '2',
        '--num-avatars', '1', '3', '--repeats', '2', '--level', '1',
        '--perturbation', "dict(type='AvatarDropout', p=0.1)",
        '--perturbation', "[dict(type='AvatarDropout', p=(0.05, 0.4)), "
        "{'type': 'AvatarGaussianNoise', 'std': 0.1}]"
    ])
    report = json.loads((out / 'fused_target_distance.json').read_text())
    assert report['shape'] == [2, 64, 8, 8]  # P4 of a 128x128 batch of 2
    assert report['config'] == DEMO_TEACHER
    assert [r['perturbation'] for r in report['results']] == [
        'AvatarDropout(p=0.1)',
        'AvatarPerturbationMix[AvatarDropout(p=(0.05, 0.4)), '
        'AvatarGaussianNoise(std=0.1)]'
    ]
    assert [row['num_avatars']
            for row in report['results'][0]['rows']] == [1, 3]
    text = ''.join((out / f'fused_target_distance.{ext}').read_text()
                   for ext in ('md', 'json', 'log'))
    assert str(tmp_path) not in text and repo_root not in text
    table = (out / 'fused_target_distance.md').read_text()
    assert '| 3 | ' in table and 'AvatarDropout(p=0.1)' in table
    with pytest.raises(SystemExit):
        tool.parse_args([
            DEMO_TEACHER, ckpt, '--out', 'x', '--perturbation',
            'dict(type=open)'
        ])
