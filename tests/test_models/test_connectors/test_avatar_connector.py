# Copyright (c) mmakd contributors. All rights reserved.
import pytest
import torch
from mmrazor.models import ConfigurableDistiller
from torch import nn

from mmakd.models import AvatarConnector
from mmakd.models.avatars import standardize
from mmakd.registry import MODELS


def test_teacher_connector_is_a_standardised_dropout_avatar():
    connector = MODELS.build(
        dict(
            type='AvatarConnector',
            perturbation=dict(type='AvatarDropout', p=0.5),
            normalize=False))
    x = torch.rand(4, 8, 6, 6) + 1
    torch.manual_seed(0)
    out = connector(x)
    assert out.shape == x.shape
    zero = out == 0
    assert 0.4 < zero.float().mean() < 0.6
    torch.testing.assert_close(out[~zero], (x * 2)[~zero])

    normalised = AvatarConnector(
        perturbation=dict(type='AvatarDropout', p=0.5))
    torch.manual_seed(0)
    torch.testing.assert_close(normalised(x), standardize(out))


def test_normaliser_only_keeps_gradients():
    connector = AvatarConnector(perturbation=None)
    x = torch.randn(2, 4, 3, 3, requires_grad=True)
    out = connector(x)
    torch.testing.assert_close(out, standardize(x))
    out.pow(2).sum().backward()
    assert x.grad is not None


def test_avatar_carries_no_gradient_into_the_teacher():
    connector = AvatarConnector()
    x = torch.randn(2, 4, 3, 3, requires_grad=True)
    assert not connector(x).requires_grad


def test_k1_akd_inside_an_unchanged_configurable_distiller():
    """ConfigurableDistiller + AvatarConnector on both sides equals the
    reference CWD variant: standardised student, raw dropout Avatar."""
    distiller = ConfigurableDistiller(
        student_recorders=dict(f=dict(type='ModuleOutputs', source='0')),
        teacher_recorders=dict(f=dict(type='ModuleOutputs', source='0')),
        distill_losses=dict(loss_cwd=dict(type='ChannelWiseDivergence')),
        connectors=dict(
            s_norm=dict(type='AvatarConnector', perturbation=None),
            t_avatar=dict(type='AvatarConnector', normalize=False)),
        loss_forward_mappings=dict(
            loss_cwd=dict(
                preds_S=dict(
                    from_student=True, recorder='f', connector='s_norm'),
                preds_T=dict(
                    from_student=False, recorder='f', connector='t_avatar'))))
    student = nn.Sequential(nn.Conv2d(3, 8, 1))
    teacher = nn.Sequential(nn.Conv2d(3, 8, 1))
    distiller.prepare_from_student(student)
    distiller.prepare_from_teacher(teacher)
    x = torch.randn(2, 3, 6, 6)
    with distiller.teacher_recorders, torch.no_grad():
        t = teacher(x)
    with distiller.student_recorders:
        s = student(x)
    torch.manual_seed(3)
    loss = distiller.compute_distill_losses()['loss_cwd']
    torch.manual_seed(3)
    avatar = distiller.connectors['t_avatar'](t)
    expected = distiller.distill_losses['loss_cwd'](standardize(s), avatar)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert student[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize('kwargs,error,match', [
    (dict(perturbation=dict(type='AvatarDropout', p=1.5)), ValueError,
     r'AvatarConnector.perturbation.p must be'),
    (dict(perturbation=dict(type='AvatarDropout', num_avatars=2)), ValueError,
     r'num_avatars must be 1'),
    (dict(normalize='yes'), TypeError, r'normalize must be a bool'),
])
def test_invalid_settings(kwargs, error, match):
    with pytest.raises(error, match=match):
        AvatarConnector(**kwargs)


def test_tuple_input_is_refused_with_a_hint():
    with pytest.raises(TypeError, match='data_idx'):
        AvatarConnector()((torch.randn(2, 4, 3, 3), ))
