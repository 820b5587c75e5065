# Copyright (c) mmakd contributors. All rights reserved.
"""Working capacity of Avatars: a teacher evaluated with one recorded
tensor replaced by the weighted mixture of its Avatars."""
import json
import os.path as osp

import pytest
import torch
from mmengine.model import BaseModel
from torch import nn

from mmakd.apis.avatar_capacity import (CAPACITY_ROWS, AvatarMixture,
                                        capacity_table)
from mmakd.models.avatars import (avatar_uncertainty, avatar_weights,
                                  build_perturbation)
from mmakd.models.avatars.seeding import seeded_generator
from helpers import DEMO_STUDENT, load_tool, random_teacher_checkpoint


class _Net(BaseModel):

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 1))
        self.head = nn.Conv2d(4, 2, 1)

    def extract_feat(self, inputs):
        return self.backbone(inputs)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        return self.head(self.extract_feat(inputs))


def test_the_mixture_is_the_uncertainty_weighted_sum_of_the_avatars():
    net, x = _Net(), torch.randn(2, 3, 6, 6)
    perturbation = dict(type='AvatarDropout', p=0.3, num_avatars=4)
    mixture = AvatarMixture(net, 'backbone', perturbation, tau=4.0, seed=3)
    assert mixture.mode == 'feat'
    with torch.no_grad():
        out = net(x, mode='predict')
        feat = net.backbone(x)
        # the same draw, by hand: the generator of batch 0, weights from u
        stack = build_perturbation(perturbation, 'p')(
            feat, generator=seeded_generator('capacity/3/0', x.device))
        weights = avatar_weights(avatar_uncertainty(feat, stack), 4.0)
        want = net.head((weights.view(4, 1, 1, 1, 1) * stack).sum(0))
    torch.testing.assert_close(out, want)
    assert not torch.allclose(out, net.head(feat))
    # other modes are left alone, and removing restores the teacher
    torch.testing.assert_close(net(x), net.head(feat))
    mixture.remove()
    torch.testing.assert_close(net(x, mode='predict'), net.head(feat))


def test_a_source_mixture_runs_the_teacher_and_flip_of_an_even_map():
    net, x = _Net(), torch.randn(2, 3, 6, 6)
    AvatarMixture(net, 'backbone', dict(type='TeacherViews'), tau=None)
    with torch.no_grad():
        out = net(x, mode='predict')
        feat = net.backbone(x)
        flipped = net.backbone(x.flip(-1)).flip(-1)
    torch.testing.assert_close(out, net.head((feat + flipped) / 2))


def test_target_errors():
    with pytest.raises(ValueError, match="no module 'neck'"):
        AvatarMixture(_Net(), 'neck', dict(type='AvatarDropout'))


def test_rows_cover_the_issue_table():
    names = [r['name'] for r in CAPACITY_ROWS]
    assert names[0] == 'vanilla'
    for k in (1, 4, 8):
        assert f'dropout_k{k}' in names and f'mc_k{k}' in names
    assert {'hetero_k4', 'flip', 'scales', 'scales_flip'} <= set(names)
    for row in CAPACITY_ROWS[1:]:
        build_perturbation(row['perturbation'], row['name'])


def _seg_options(root):
    return {
        'test_dataloader.dataset.data_root': root,
        'test_dataloader.batch_size': 2
    }


def test_identity_avatars_keep_the_teachers_miou(shapes_root, tmp_path):
    """Avatars equal to the teacher (dropout p = 0, outside or inside it)
    give exactly its mIoU; flip views give another prediction."""
    ckpt = random_teacher_checkpoint(
        str(tmp_path / 'teacher.pth'), DEMO_STUDENT)
    rows = [
        CAPACITY_ROWS[0],
        dict(
            name='p0',
            label='p = 0',
            perturbation=dict(type='AvatarDropout', p=0.0, num_avatars=3)),
        dict(
            name='mc0',
            label='in-network p = 0',
            perturbation=dict(type='TeacherDropout', p=0.0, num_avatars=2)),
        dict(
            name='flip', label='flip', perturbation=dict(type='TeacherViews')),
    ]
    report = capacity_table(
        DEMO_STUDENT,
        ckpt,
        'decode_head.conv_seg',
        'mIoU',
        rows=rows,
        work_dir=str(tmp_path / 'work'),
        cfg_options=_seg_options(shapes_root),
        echo=lambda line: None)
    metric = {r['name']: r['metric'] for r in report['rows']}
    forwards = {r['name']: r['teacher_forwards'] for r in report['rows']}
    assert metric['p0'] == metric['vanilla'] == metric['mc0']
    assert forwards == dict(vanilla=1, p0=1, mc0=2, flip=2)
    assert report['config'] == DEMO_STUDENT


def test_cli_writes_the_table(shapes_root, tmp_path, capsys):
    tool = load_tool('tools/analysis_tools/avatar_capacity.py', 'capacity')
    ckpt = random_teacher_checkpoint(
        str(tmp_path / 'teacher.pth'), DEMO_STUDENT)
    out = tmp_path / 'out'
    options = [f'{k}={v}' for k, v in _seg_options(shapes_root).items()]
    tool.main([
        DEMO_STUDENT, ckpt, '--target', 'decode_head.conv_seg', '--metric',
        'mIoU', '--rows', 'vanilla', 'mc_k1', '--out',
        str(out), '--work-dir',
        str(tmp_path / 'work'), '--cfg-options', *options
    ])
    report = json.loads((out / 'capacity.json').read_text())
    assert [r['name'] for r in report['rows']] == ['vanilla', 'mc_k1']
    table = (out / 'capacity.md').read_text()
    assert '| in-network dropout p = 0.1 (backbone stages), K = 1 | 1 | 1 |' \
        in table
    log = (out / 'capacity.log').read_text()
    assert '[capacity] vanilla: mIoU' in log and str(tmp_path) not in log
    assert osp.basename(ckpt) in report['checkpoint']
