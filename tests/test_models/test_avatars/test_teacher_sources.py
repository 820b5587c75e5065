# Copyright (c) mmakd contributors. All rights reserved.
"""TeacherViews and TeacherDropout on their own: views, mapping back,
hooks, seeds and errors (AKD's Avatars as inference ensembles)."""
import pytest
import torch
from mmrazor.models.task_modules.recorder import RecorderManager
from torch import nn

from mmakd.models import (AvatarConnector, AvatarPerturbationMix,
                          TeacherDropout, TeacherViews, build_perturbation,
                          default_dropout_modules, record_teacher_avatars)

pytestmark = pytest.mark.usefixtures('fresh_message_hub')

KEY = 'model.distiller.avatars.perturbation'


def test_views_are_every_scale_without_and_with_flip():
    views = TeacherViews(flip=True, scales=(0.5, 1.0))
    assert views.num_avatars == 4 and views.per_avatar
    assert views.views == [(0.5, False), (0.5, True), (1.0, False),
                           (1.0, True)]
    assert views.reference_index == 2
    assert TeacherViews().num_avatars == 2  # flip-TTA
    assert TeacherViews(flip=False, scales=(1.0, 1.5)).num_avatars == 2


@pytest.mark.parametrize('kwargs,error', [
    (dict(scales=(0.5, 2.0)), 'must hold 1.0'),
    (dict(scales=(1.0, 1.0)), 'duplicates'),
    (dict(scales=(1.0, -1.0)), 'numbers > 0'),
    (dict(flip=False, jitter=dict(brightness=0.1)), 'there is none'),
    (dict(jitter=dict(hue=0.1)), 'keys'),
    (dict(jitter=dict(contrast=1.5)), r'jitter.contrast must be'),
    (dict(size_divisor=0), 'size_divisor'),
    (dict(samples_per_forward=0), 'samples_per_forward'),
])
def test_views_validation_names_the_key(kwargs, error):
    with pytest.raises(ValueError, match=error) as info:
        build_perturbation(dict(type='TeacherViews', **kwargs), KEY)
    assert str(info.value).startswith(KEY)


def test_view_groups_flip_and_resize_the_batch():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    views = TeacherViews(scales=(1.0, 0.5), size_divisor=4)
    groups = views.groups(x, None)
    assert [g.avatars for g in groups] == [[0, 1], [2, 3]]
    torch.testing.assert_close(groups[0].inputs[:2], x, rtol=0, atol=0)
    torch.testing.assert_close(
        groups[0].inputs[2:], x.flip(-1), rtol=0, atol=0)
    half = torch.nn.functional.interpolate(
        x, size=(4, 4), mode='bilinear', align_corners=False)
    torch.testing.assert_close(groups[1].inputs[:2], half, rtol=0, atol=0)
    torch.testing.assert_close(
        groups[1].inputs[2:], half.flip(-1), rtol=0, atol=0)
    # samples_per_forward=2 images: one Avatar (of 2 images) per forward
    small = TeacherViews(
        scales=(1.0, 0.5), size_divisor=4, samples_per_forward=2)
    assert [g.avatars for g in small.groups(x, None)] == [[0], [1], [2], [3]]


def test_view_sizes_round_to_the_divisor():
    views = TeacherViews(scales=(1.0, 0.75, 1.25))
    assert views.view_size(0.75, (128, 100)) == [96, 64]
    assert views.view_size(1.25, (128, 100)) == [160, 128]
    assert views.view_size(0.1, (128, 100)) == [32, 32]
    assert views.view_size(1.0, (127, 100)) == [127, 100]


def test_map_back_flips_and_resizes_onto_the_original_frame():
    views = TeacherViews(scales=(1.0, 2.0))
    ref = torch.randn(2, 4, 6, 5)
    torch.testing.assert_close(
        views.map_back(ref.flip(-1), 1, ref, 'r'), ref, rtol=0, atol=0)
    big = torch.randn(2, 4, 12, 10)
    back = views.map_back(big.flip(-1), 3, ref, 'r')
    want = torch.nn.functional.interpolate(
        big, size=(6, 5), mode='bilinear', align_corners=False)
    torch.testing.assert_close(back, want, rtol=0, atol=0)
    assert views.map_back(ref, 0, ref, 'r') is ref


def test_a_pooled_record_cannot_be_mapped_back():
    views = TeacherViews()
    pooled = torch.randn(2, 8)
    with pytest.raises(
            ValueError,
            match=r"recorder 'pool' record 0: a record of shape "
            r'\(2, 8\) has no spatial layout.*view 1 \(scale 1, '
            r'flipped\)'):
        views.map_back(pooled, 1, pooled, "teacher recorder 'pool' record 0")
    # the original view needs no mapping
    assert views.map_back(pooled, 0, pooled, 'r') is pooled


def test_jitter_changes_every_view_but_the_original_reproducibly():
    x = torch.randn(3, 3, 4, 4)
    views = TeacherViews(jitter=dict(brightness=0.2, contrast=0.3))
    a = views.groups(x, torch.Generator().manual_seed(1))[0].inputs
    b = views.groups(x, torch.Generator().manual_seed(1))[0].inputs
    c = views.groups(x, torch.Generator().manual_seed(2))[0].inputs
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(a[:3], x, rtol=0, atol=0)  # the original
    assert not torch.equal(a[3:], c[3:])
    # per image: a contrast factor and a shift, within their ranges
    flipped = x.flip(-1)
    for i in range(3):
        fit = torch.linalg.lstsq(
            torch.stack(
                [flipped[i].flatten(), torch.ones(48)], 1),
            a[3 + i].flatten()[:, None])
        contrast, shift = fit.solution.flatten().tolist()
        assert 0.7 - 1e-5 <= contrast <= 1.3 + 1e-5
        assert abs(shift) <= 0.2 + 1e-5


class _Net(nn.Module):

    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 4, 1))
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        return self.head(self.backbone(x))


def _manager(net, source='head'):
    manager = RecorderManager(
        dict(r=dict(type='ModuleOutputs', source=source)))
    manager.initialize(net)
    return manager


def _record(net, manager):

    def run(x):
        with manager:
            net(x)

    return run


def test_dropout_samples_differ_are_seeded_and_the_recorders_hold_the_mean():
    torch.manual_seed(0)
    net, x = _Net(), torch.randn(2, 3, 5, 5)
    source = TeacherDropout(p=0.3, modules=['backbone.1'], num_avatars=3)
    source.attach([net], KEY)
    manager = _manager(net)

    def draw(seed):
        out = record_teacher_avatars(source, _record(net, manager), x, manager,
                                     torch.Generator().manual_seed(seed))
        return torch.stack([b[0] for b in out['r']]), \
            manager.recorders['r'].data_buffer[0]

    stack, recorded = draw(5)
    assert stack.shape == (3, 2, 2, 5, 5)
    assert not torch.equal(stack[0], stack[1])
    assert not torch.equal(stack[1], stack[2])
    torch.testing.assert_close(recorded, stack.mean(0))
    again, _ = draw(5)
    torch.testing.assert_close(again, stack, rtol=0, atol=0)
    other, _ = draw(6)
    assert not torch.equal(other, stack)
    # outside the source's context the teacher is itself
    plain = net(x)
    torch.testing.assert_close(net(x), plain, rtol=0, atol=0)
    # K = 3 Avatars ran as one forward of 3 x 2 images
    calls = []
    hook = net.backbone.register_forward_hook(
        lambda m, i, o: calls.append(len(o)))
    draw(5)
    hook.remove()
    assert calls == [6]


def test_dropout_is_inverted_and_drops_at_the_rate(device):
    net = nn.Sequential(nn.Identity())
    source = TeacherDropout(p=0.25, modules=['0'], num_avatars=1)
    source.attach([net], KEY)
    x = torch.ones(200, 50, device=device)
    with source.active(torch.Generator(device=device).manual_seed(0)):
        out = net(x)
    assert out.device == device
    kept = out != 0
    assert torch.all(out[kept] == 1 / 0.75)
    assert abs(kept.float().mean().item() - 0.75) < 0.01  # 10,000 draws
    channel = TeacherDropout(p=0.5, modules=['0'], channel=True)
    channel.attach([net], KEY)
    with channel.active(torch.Generator(device=device).manual_seed(0)):
        maps = net(torch.ones(4, 16, 3, 3, device=device))
    per_channel = maps.flatten(2)
    assert torch.all(per_channel.amax(2) == per_channel.amin(2))
    assert 0 < (per_channel[..., 0] == 0).sum() < 64


def test_dropout_runs_before_a_recorder_of_the_same_module():
    torch.manual_seed(0)
    net, x = _Net(), torch.randn(2, 3, 4, 4)
    manager = _manager(net, 'backbone')  # the recorder hooks first
    source = TeacherDropout(p=0.5, modules=['backbone'], num_avatars=2)
    source.attach([net], KEY)
    out = record_teacher_avatars(source, _record(net, manager), x, manager,
                                 torch.Generator().manual_seed(0))
    zeros = [(b[0] == 0).float().mean().item() for b in out['r']]
    with torch.no_grad():
        clean = (net.backbone(x) == 0).float().mean().item()
    assert all(z > clean + 0.2 for z in zeros)


def test_default_dropout_modules_of_mmdet_mmseg_resnets():
    from mmdet.models.backbones import ResNet as DetResNet
    from mmseg.models.backbones import ResNetV1c

    for backbone in (DetResNet(depth=18), ResNetV1c(depth=18)):
        net = nn.Module()
        net.backbone = backbone
        assert default_dropout_modules(net) == [
            'backbone.layer1', 'backbone.layer2', 'backbone.layer3',
            'backbone.layer4'
        ]
    net = nn.Module()
    net.backbone = nn.Module()
    net.backbone.stages = nn.ModuleList([nn.Identity(), nn.Identity()])
    assert default_dropout_modules(net) == [
        'backbone.stages.0', 'backbone.stages.1'
    ]


def test_dropout_module_errors_name_the_key():
    source = TeacherDropout(modules=['backbone.2', 'backbone.9'])
    with pytest.raises(
            ValueError,
            match=f"{KEY}.modules: the teacher has no module 'backbone.9'; "
            r"did you mean \['backbone.2'"):
        source.attach([_Net()], KEY)
    with pytest.raises(
            ValueError,
            match=f'{KEY}.modules: no default for a '
            'teacher whose backbone is Sequential'):
        TeacherDropout().attach([_Net()], KEY)


def test_attach_again_replaces_the_hooks():
    net = nn.Sequential(nn.Identity())
    source = TeacherDropout(p=0.5, modules=['0'])
    source.attach([net], KEY)
    source.attach([net], KEY)
    assert len(net[0]._forward_hooks) == 1


@pytest.mark.parametrize('cfg,error', [
    (dict(type='TeacherDropout', p=1.0), 'p must be'),
    (dict(type='TeacherDropout', modules='backbone'), 'list of module'),
    (dict(type='TeacherDropout', channel=1), 'channel must be'),
])
def test_dropout_validation(cfg, error):
    with pytest.raises((ValueError, TypeError), match=error):
        build_perturbation(cfg, KEY)


def test_sources_cannot_perturb_records_mix_or_connect():
    with pytest.raises(TypeError, match='running the teacher'):
        TeacherViews()(torch.randn(2, 3, 4, 4))
    with pytest.raises(TypeError, match=r'p\[1\]: TeacherDropout draws'):
        AvatarPerturbationMix(
            [dict(type='AvatarDropout'),
             dict(type='TeacherDropout')], 'p')
    with pytest.raises(TypeError, match='a connector cannot'):
        AvatarConnector(perturbation=dict(type='TeacherViews'))


def test_a_record_without_the_batch_first_is_named():
    net = _Net()
    manager = RecorderManager(
        dict(w=dict(type='ModuleOutputs', source='backbone')))
    manager.initialize(net)
    source = TeacherViews(flip=True)

    def run(x):
        with manager:
            net(x)
        manager.recorders['w'].data_buffer[0] = torch.zeros(3, 4)

    with pytest.raises(
            ValueError,
            match=r"teacher recorder 'w' record 0: a "
            r'tensor of shape \(3, 4\) from a teacher forward on '
            '2 x 2 images'):
        record_teacher_avatars(source, run, torch.randn(2, 3, 4, 4), manager,
                               None)


def test_out_of_memory_halves_the_forwards_and_keeps_the_avatars(device):
    """A forward of more than 4 images runs out of memory: K = 4 Avatars
    of 2 images then run 2 per forward, from the same generator state (on
    ``--device``: a CUDA generator's state, CUDA's cache emptied)."""
    torch.manual_seed(0)
    net, x = _Net().to(device), torch.randn(2, 3, 5, 5).to(device)
    manager = _manager(net)
    sizes = []

    def run(batch):
        sizes.append(len(batch))
        with manager:
            net(batch)  # draws masks, then fails (as late as possible)
        if len(batch) > 4:
            raise torch.OutOfMemoryError('CUDA out of memory (simulated)')

    def draw(source):
        source.attach([net], KEY)
        out = record_teacher_avatars(
            source, run, x, manager,
            torch.Generator(device=device).manual_seed(3))
        return torch.stack([b[0] for b in out['r']])

    source = TeacherDropout(p=0.3, modules=['backbone.1'], num_avatars=4)
    stack = draw(source)
    assert sizes == [8, 4, 4] and source.samples_per_forward == 4
    assert stack.device == device and not torch.equal(stack[0], stack[1])
    sizes.clear()
    again = draw(
        TeacherDropout(
            p=0.3,
            modules=['backbone.1'],
            num_avatars=4,
            samples_per_forward=4))
    torch.testing.assert_close(stack, again, rtol=0, atol=0)
    # one Avatar per forward and still too big: the error goes through
    tight = TeacherDropout(p=0.3, modules=['backbone.1'], num_avatars=2)
    tight.attach([net], KEY)
    with pytest.raises(torch.OutOfMemoryError):
        record_teacher_avatars(tight, run,
                               torch.randn(6, 3, 5, 5).to(device), manager,
                               None)
