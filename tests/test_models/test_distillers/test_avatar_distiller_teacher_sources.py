# Copyright (c) mmakd contributors. All rights reserved.
"""AvatarDistiller with Avatars that run the teacher (TeacherViews,
TeacherDropout) inside FlexibleTeacherDistill and MultiTeacherDistill:
the teacher's truncated forward, frozen teacher, seeds, fusion, errors."""
import copy
import os.path as osp

import pytest
import torch
from mmengine.model import BaseModel
from mmrazor.models import SingleTeacherDistill
from mmrazor.models.losses import ChannelWiseDivergence
from torch import nn

from mmakd.models import (FlexibleTeacherDistill, MultiTeacherDistill,
                          avatar_uncertainty, avatar_weights)
from mmakd.testing import det_batch, seg_batch
from helpers import REPO

pytestmark = pytest.mark.usefixtures('fresh_message_hub')

KEY = 'model.distiller.avatars.perturbation'
PSP = osp.join(REPO, 'configs/akd/demo/pspnet_r18-w8_1xb8-600it_shapes-128.py')
RETINA = osp.join(
    REPO, 'configs/akd/demo/retinanet_r18-w8_fpn-64_1xb8-400it_shapes-128.py')


class Toy(BaseModel):
    """Two stride-1 3x3 convolutions; with ``symmetric`` kernels (equal
    under a horizontal flip) it is flip-equivariant."""

    def __init__(self, symmetric: bool = False, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(),
            nn.Conv2d(6, 6, 3, padding=1))
        if symmetric:
            with torch.no_grad():
                for conv in (self.backbone[0], self.backbone[2]):
                    conv.weight.copy_((conv.weight + conv.weight.flip(-1)) / 2)

    def extract_feat(self, inputs):
        return self.backbone(inputs)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        feat = self.extract_feat(inputs)
        if mode == 'loss':
            return dict(loss_task=feat.pow(2).mean())
        return feat


def _distiller(perturbation, avatars=None, source='backbone', **kwargs):
    distiller = dict(
        type='AvatarDistiller',
        avatars=dict(
            perturbation=perturbation, normalize=False, **(avatars or {})),
        student_recorders=dict(f=dict(type='ModuleOutputs', source=source)),
        teacher_recorders=dict(f=dict(type='ModuleOutputs', source=source)),
        distill_losses=dict(loss_cwd=dict(type='ChannelWiseDivergence')),
        loss_forward_mappings=dict(
            loss_cwd=dict(
                preds_S=dict(from_student=True, recorder='f'),
                preds_T=dict(from_student=False, recorder='f'))))
    distiller.update(kwargs)
    return distiller


def _flexible(distiller, net=Toy, symmetric=False, **kwargs):
    """FlexibleTeacherDistill of a ``net`` student (seed 1) and teacher
    (seed 2, ``symmetric``), without the shape check."""
    return FlexibleTeacherDistill(
        architecture=net(seed=1),
        teacher=net(symmetric=symmetric, seed=2),
        distiller=distiller,
        check_shapes=False,
        **kwargs)


def _toy_algorithm(perturbation, symmetric=False, **avatars):
    return _flexible(_distiller(perturbation, avatars), symmetric=symmetric)


def _stack(model, recorder='f'):
    """The last iteration's Avatars of the teacher recorder, as the
    distiller reads them."""
    seen = {}
    original = model.distiller.compute_distill_losses

    def spy():
        seen['avatars'] = model.distiller.teacher_avatars
        return original()

    model.distiller.compute_distill_losses = spy
    return seen


def test_a_flip_view_of_a_flip_equivariant_teacher_is_the_teacher():
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    model = _toy_algorithm(dict(type='TeacherViews'), symmetric=True).double()
    seen = _stack(model)
    losses = model.loss(x)
    original, flipped = (b[0] for b in seen['avatars']['f'])
    with torch.no_grad():
        teacher = model.teacher.extract_feat(x)
        student = model.student.extract_feat(x)
    torch.testing.assert_close(original, teacher, rtol=0, atol=0)
    torch.testing.assert_close(flipped, teacher, rtol=1e-12, atol=1e-12)
    # both Avatars are the teacher: AKD is the base loss, weights equal
    torch.testing.assert_close(
        losses['distill.loss_cwd'],
        ChannelWiseDivergence()(student, teacher).double())
    assert losses['distill.akd.cwd.w0'].item() == pytest.approx(0.5)


def test_a_flip_view_of_another_teacher_is_its_flipped_back_prediction():
    x = torch.randn(2, 3, 8, 8)
    model = _toy_algorithm(dict(type='TeacherViews'))
    seen = _stack(model)
    losses = model.loss(x)
    original, flipped = (b[0] for b in seen['avatars']['f'])
    # the drift of each view is taken from the views' mean, not from the
    # original (whose drift would be 0: all the weight)
    stack = torch.stack([original, flipped])
    weights = avatar_weights(avatar_uncertainty(stack.mean(0), stack), 4.0)
    torch.testing.assert_close(
        torch.stack(
            [losses['distill.akd.cwd.w0'], losses['distill.akd.cwd.w1']]),
        weights)
    assert 0.3 < weights[0] < 0.7
    with torch.no_grad():
        want = model.teacher.extract_feat(x.flip(-1)).flip(-1)
        teacher = model.teacher.extract_feat(x)
    torch.testing.assert_close(flipped, want)
    assert (flipped - teacher).abs().max() > 1e-3
    # the losses without Avatars see the original view, the teacher
    torch.testing.assert_close(
        model.distiller.teacher_recorders.recorders['f'].data_buffer[0],
        teacher)


def test_in_network_dropout_avatars_differ_and_repeat_with_the_seed():
    x = torch.randn(2, 3, 8, 8)

    def run(seed):
        model = _toy_algorithm(
            dict(type='TeacherDropout', p=0.2, modules=['backbone.1']),
            num_avatars=3)
        torch.manual_seed(seed)  # the runner's seed
        seen = _stack(model)
        losses = model.loss(x)
        return torch.stack([b[0] for b in seen['avatars']['f']]), losses

    stack, losses = run(0)
    assert not torch.equal(stack[0], stack[1])
    again, losses_again = run(0)
    torch.testing.assert_close(again, stack, rtol=0, atol=0)
    torch.testing.assert_close(
        losses_again['distill.loss_cwd'],
        losses['distill.loss_cwd'],
        rtol=0,
        atol=0)
    other, _ = run(1)
    assert not torch.equal(other, stack)
    assert {f'distill.akd.cwd.w{k}' for k in range(3)} <= set(losses)


@pytest.mark.parametrize('perturbation', [
    dict(type='TeacherViews', scales=(1.0, 0.5), size_divisor=8),
    dict(type='TeacherDropout', p=0.2, modules=['backbone.0'])
])
def test_gradients_reach_the_student_never_the_teacher(perturbation):
    model = _toy_algorithm(perturbation)
    losses = model.loss(torch.randn(2, 3, 16, 16))
    model.parse_losses(losses)[0].backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for p in model.student.parameters())


@pytest.mark.parametrize('perturbation', [
    dict(type='TeacherViews', scales=(1.0, 0.5), size_divisor=8),
    dict(type='TeacherDropout', p=0.2, modules=['backbone.0'])
])
def test_fused_target_equals_the_loop(perturbation):
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    out = {}
    for fuse in (True, False):
        torch.manual_seed(0)
        model = _toy_algorithm(perturbation, fuse=fuse).double()
        losses = model.loss(x)
        model.parse_losses(losses)[0].backward()
        out[fuse] = (losses['distill.loss_cwd'].detach(),
                     model.student.backbone[0].weight.grad.clone())
    torch.testing.assert_close(
        out[True][0], out[False][0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(
        out[True][1], out[False][1], rtol=1e-9, atol=1e-12)


def _psp(**kwargs):
    from mmakd.models.utils import build_model_from_spec
    return build_model_from_spec(dict(cfg_path=PSP), 'model')


@pytest.mark.parametrize('perturbation,forwards', [
    (dict(type='TeacherViews', scales=(1.0, 0.5)), [(4, 128), (4, 64)]),
    (dict(type='TeacherDropout', p=0.1, num_avatars=3), [(6, 128)]),
])
def test_pspnet_logits_from_the_truncated_tensor_forward(
        perturbation, forwards):
    """MMSegmentation's PSPNet: 'tensor' mode (no loss, no labels), its
    ResNetV1c stages hooked by default, batches as few as possible."""
    torch.manual_seed(0)
    model = FlexibleTeacherDistill(
        architecture=_psp(),
        teacher=_psp(),
        distiller=_distiller(perturbation, source='decode_head.conv_seg'))
    assert model.teacher_forward == 'tensor'
    if perturbation['type'] == 'TeacherDropout':
        assert model.distiller.perturbation.hooked == [[
            f'backbone.layer{i}' for i in range(1, 5)
        ]]
    sizes = []
    model.teacher.backbone.register_forward_hook(
        lambda m, i, o: sizes.append(tuple(i[0].shape)))
    data = model.data_preprocessor(seg_batch(2, 64, 64, num_classes=7), True)
    seen = _stack(model)
    losses = model.loss(data['inputs'], data['data_samples'])
    model.parse_losses(losses)[0].backward()
    # (images, width) per teacher forward (the preprocessor pads to 128)
    assert [(s[0], s[-1]) for s in sizes] == forwards
    shapes = {tuple(b[0].shape) for b in seen['avatars']['f']}
    assert shapes == {(2, 7, 16, 16)}
    assert torch.isfinite(losses['distill.loss_cwd'])
    assert all(p.grad is None for p in model.teacher.parameters())


def test_retinanet_fpn_levels_from_the_feat_forward():
    from mmakd.models.utils import build_model_from_spec
    torch.manual_seed(0)
    student = build_model_from_spec(dict(cfg_path=RETINA), 'model')
    model = FlexibleTeacherDistill(
        architecture=student,
        teacher=copy.deepcopy(student),
        distiller=_distiller(
            dict(type='TeacherViews', scales=(1.0, 1.5)),
            source='neck',
            loss_forward_mappings=dict(
                loss_cwd=dict(
                    preds_S=dict(from_student=True, recorder='f', data_idx=1),
                    preds_T=dict(from_student=False, recorder='f',
                                 data_idx=1)))))
    assert model.teacher_forward == 'feat'
    data = model.data_preprocessor(det_batch(2, 64, 64, num_classes=6), True)
    seen = _stack(model)
    losses = model.loss(data['inputs'], data['data_samples'])
    levels = [[tuple(t.shape) for t in b[0]] for b in seen['avatars']['f']]
    assert all(lv == levels[0] for lv in levels) and len(levels) == 4
    assert torch.isfinite(losses['distill.loss_cwd'])


def test_two_copies_of_one_teacher_give_its_view_avatars():
    x = torch.randn(2, 3, 8, 8)
    torch.manual_seed(0)
    single = _toy_algorithm(dict(type='TeacherViews'))
    multi = MultiTeacherDistill(
        architecture=Toy(seed=1),
        teachers=[Toy(seed=2), Toy(seed=2)],
        distiller=_distiller(dict(type='TeacherViews')),
        check_shapes=False)
    torch.testing.assert_close(
        multi.loss(x)['distill.loss_cwd'],
        single.loss(x)['distill.loss_cwd'])


def test_multi_teacher_dropout_hooks_every_teacher():
    multi = MultiTeacherDistill(
        architecture=Toy(seed=1),
        teachers=[Toy(seed=2), Toy(seed=3)],
        distiller=_distiller(
            dict(type='TeacherDropout', modules=['backbone.1'])),
        check_shapes=False)
    assert multi.distiller.perturbation.hooked == [['backbone.1']] * 2
    assert all(len(t.backbone[1]._forward_hooks) == 1 for t in multi.teachers)


def test_build_errors_name_the_config_key():
    with pytest.raises(
            ValueError,
            match=f'{KEY}.modules: the teacher has '
            "no module 'backbone.7'"):
        _toy_algorithm(dict(type='TeacherDropout', modules=['backbone.7']))
    with pytest.raises(
            ValueError,
            match=f'{KEY}: TeacherViews runs the '
            'frozen teacher several times'):
        _flexible(
            _distiller(dict(type='TeacherViews')), teacher_trainable=True)
    with pytest.raises(ValueError, match=f"{KEY}: TeacherViews.*'loss'"):
        _flexible(
            _distiller(dict(type='TeacherViews')), teacher_forward='loss')
    with pytest.raises(ValueError, match='defines 2 Avatars'):
        _toy_algorithm(dict(type='TeacherViews'), num_avatars=4)


def test_mmrazor_single_teacher_distill_is_told_what_to_use():
    model = SingleTeacherDistill(
        architecture=Toy(seed=1),
        teacher=Toy(seed=2),
        distiller=_distiller(dict(type='TeacherViews')))
    with pytest.raises(
            RuntimeError, match="model.type='FlexibleTeacherDistill'"):
        model.loss(torch.randn(2, 3, 8, 8))


class PooledToy(Toy):
    """Toy whose neck pools the features to ``(N, C)`` vectors."""

    def __init__(self, symmetric: bool = False, seed: int = 0) -> None:
        super().__init__(symmetric=symmetric, seed=seed)
        self.neck = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def extract_feat(self, inputs):
        return self.neck(self.backbone(inputs))


def test_a_pooled_record_fails_naming_its_recorder_and_view():
    distiller = _distiller(dict(type='TeacherViews'), source='neck')
    distiller['distill_losses'] = dict(
        loss_cwd=dict(type='KLDivergence', tau=1.0))
    model = _flexible(distiller, net=PooledToy)
    with pytest.raises(
            ValueError,
            match=r"teacher recorder 'f' record 0: a record of "
            r'shape \(2, 6\) has no spatial layout.*view 1 '
            r'\(scale 1, flipped\)'):
        model.loss(torch.randn(2, 3, 8, 8))
    # in-network dropout needs no mapping: pooled records are fine
    distiller['avatars']['perturbation'] = dict(
        type='TeacherDropout', modules=['backbone.1'])
    model = _flexible(distiller, net=PooledToy)
    assert torch.isfinite(
        model.loss(torch.randn(2, 3, 8, 8))['distill.loss_cwd'])
