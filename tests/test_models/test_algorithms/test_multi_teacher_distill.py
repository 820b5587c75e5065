# Copyright (c) mmakd contributors. All rights reserved.
"""MultiTeacherDistill: a real ensemble of frozen teachers, averaged."""
import copy
import os.path as osp

import pytest
import torch
from mmengine.optim import build_optim_wrapper

from mmakd.models import FlexibleTeacherDistill, MultiTeacherDistill
from mmakd.models.utils.teacher_forward import TeacherRecordError
from mmakd.registry import MODELS
from mmakd.testing import det_batch
from helpers import REPO

# The demo's RetinaNet at width 8: 3 FPN levels of 64 channels, small.
SMALL = osp.join(
    REPO, 'configs/akd/demo/retinanet_r18-w8_fpn-64_1xb8-400it_'
    'shapes-128.py')
LEVELS = 3


def _model(seed, **options):
    from mmakd.models.utils import build_model_from_spec
    torch.manual_seed(seed)
    return build_model_from_spec(
        dict(cfg_path=SMALL, cfg_options=options), 'model')


def _distiller(avatars=None):
    """CWD on every FPN level (the demo's recipe), optionally with
    Avatars."""
    distiller = dict(
        type='ConfigurableDistiller',
        student_recorders=dict(fpn=dict(type='ModuleOutputs', source='neck')),
        teacher_recorders=dict(fpn=dict(type='ModuleOutputs', source='neck')),
        distill_losses={
            f'loss_cwd{i}': dict(type='ChannelWiseDivergence', tau=1.0)
            for i in range(LEVELS)
        },
        loss_forward_mappings={
            f'loss_cwd{i}':
            dict(
                preds_S=dict(from_student=True, recorder='fpn', data_idx=i),
                preds_T=dict(from_student=False, recorder='fpn', data_idx=i))
            for i in range(LEVELS)
        })
    if avatars:
        distiller.update(type='AvatarDistiller', avatars=avatars)
    return distiller


AVATARS = dict(
    num_avatars=4,
    perturbation=dict(type='AvatarDropout', p=0.1),
    normalize=False)


def _frozen(net):
    """A copy of ``net`` as MMRazor runs a frozen teacher: training mode,
    BatchNorm statistics frozen (``teacher_norm_eval``)."""
    net = copy.deepcopy(net).train()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
    return net


def _save(model, path):
    torch.save(dict(state_dict=model.state_dict()), str(path))
    return str(path)


@pytest.fixture(scope='module')
def nets():
    """A student and two different teachers (same architecture)."""
    return dict(student=_model(0), a=_model(1), b=_model(2))


@pytest.fixture(scope='module')
def data():
    return det_batch(2, 96, 96, num_classes=6, seed=4)


def _losses(model, data, seed=7):
    batch = model.data_preprocessor(copy.deepcopy(data), True)
    model.train()
    torch.manual_seed(seed)
    return {
        k:
        torch.stack([x.detach()
                     for x in v]) if isinstance(v, list) else v.detach()
        for k, v in model.loss(batch['inputs'], batch['data_samples']).items()
    }


@pytest.mark.parametrize(
    'avatars', [None, AVATARS],
    ids=['ConfigurableDistiller', 'AvatarDistiller'])
def test_two_copies_of_one_checkpoint_are_exactly_one_teacher(
        nets, data, tmp_path, avatars):
    path = _save(nets['a'], tmp_path / 'a.pth')
    single = FlexibleTeacherDistill(
        architecture=copy.deepcopy(nets['student']),
        teacher=copy.deepcopy(nets['b']),  # overwritten by the checkpoint
        distiller=_distiller(avatars),
        teacher_ckpt=path)
    multi = MultiTeacherDistill(
        architecture=copy.deepcopy(nets['student']),
        teachers=[copy.deepcopy(nets['b']),
                  copy.deepcopy(nets['student'])],
        distiller=_distiller(avatars),
        teacher_ckpts=[path, path])
    one, two = _losses(single, data), _losses(multi, data)
    distill = [k for k in one if k.startswith('distill.')]
    assert len(distill) >= LEVELS and set(one) == set(two)
    for key in one:
        assert torch.equal(one[key], two[key]), key
    # the losses do depend on the teacher
    other = MultiTeacherDistill(
        architecture=copy.deepcopy(nets['student']),
        teachers=[copy.deepcopy(nets['b']) for _ in range(2)],
        distiller=_distiller(avatars))
    assert not torch.equal(
        _losses(other, data)['distill.loss_cwd0'], one['distill.loss_cwd0'])


def test_different_teachers_give_the_mean_record_and_its_losses(nets, data):
    multi = MultiTeacherDistill(
        architecture=copy.deepcopy(nets['student']),
        teachers=[copy.deepcopy(nets['a']),
                  copy.deepcopy(nets['b'])],
        distiller=_distiller())
    assert multi.teacher_forward == 'feat'
    losses = _losses(multi, data)
    batch = multi.data_preprocessor(copy.deepcopy(data), True)
    with torch.no_grad():
        feats = [_frozen(nets[k]).extract_feat(batch['inputs']) for k in 'ab']
        student = copy.deepcopy(nets['student']).train().extract_feat(
            batch['inputs'])
    from mmrazor.models.losses import ChannelWiseDivergence
    cwd = ChannelWiseDivergence(tau=1.0)
    for i in range(LEVELS):
        mean = (feats[0][i] + feats[1][i]) / 2
        assert not torch.allclose(mean, feats[0][i])
        torch.testing.assert_close(
            multi.distiller.get_record('fpn', False, data_idx=i), mean)
        torch.testing.assert_close(
            losses[f'distill.loss_cwd{i}'],
            cwd(student[i], mean),
            rtol=1e-5,
            atol=1e-7)


def test_avatars_are_drawn_from_the_mean_teacher(nets, data):
    """With AvatarDistiller, the vanilla teacher record it perturbs is the
    teachers' mean, and one draw of Avatars per iteration, not per
    teacher."""
    multi = MultiTeacherDistill(
        architecture=copy.deepcopy(nets['student']),
        teachers=[copy.deepcopy(nets['a']),
                  copy.deepcopy(nets['b'])],
        distiller=_distiller(AVATARS))
    losses = _losses(multi, data)
    batch = multi.data_preprocessor(copy.deepcopy(data), True)
    with torch.no_grad():
        feats = [_frozen(nets[k]).extract_feat(batch['inputs']) for k in 'ab']
    for i in range(LEVELS):
        torch.testing.assert_close(
            multi.distiller.get_record('fpn', False, data_idx=i),
            (feats[0][i] + feats[1][i]) / 2)
    import re
    weights = [k for k in losses if re.fullmatch(r'distill\.akd\..*\.w\d+', k)]
    assert len(weights) == AVATARS['num_avatars'] * LEVELS
    assert all(torch.isfinite(v).all() for v in losses.values())


def test_teachers_are_frozen_and_run_once_each(nets, data):
    teachers = [copy.deepcopy(nets[k]) for k in 'ab'] + [_model(3)]
    model = MultiTeacherDistill(
        architecture=copy.deepcopy(nets['student']),
        teachers=teachers,
        distiller=_distiller())
    assert model.teachers == [teachers[0], teachers[1], teachers[2]]
    calls = [0, 0, 0]
    for i, t in enumerate(model.teachers):
        assert not any(p.requires_grad for p in t.parameters())
        t.backbone.register_forward_hook(
            lambda *args, i=i: calls.__setitem__(i, calls[i] + 1))
    before = [copy.deepcopy(t.state_dict()) for t in model.teachers]
    student0 = copy.deepcopy(model.student.state_dict())
    optim = build_optim_wrapper(
        model, dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9)))
    model.train()
    bns = [
        m for t in model.teachers for m in t.modules()
        if isinstance(m, torch.nn.BatchNorm2d)
    ]
    assert bns and not any(m.training for m in bns)  # teacher_norm_eval
    log = model.train_step(copy.deepcopy(data), optim)
    assert calls == [1, 1, 1]
    assert {f'distill.loss_cwd{i}' for i in range(LEVELS)} <= set(log)
    for t, state in zip(model.teachers, before):
        for k, v in t.state_dict().items():
            assert torch.equal(v, state[k]), k  # weights and BN statistics
    assert any(not torch.equal(v, student0[k])
               for k, v in model.student.state_dict().items())
    # a checkpoint of the algorithm holds every teacher
    keys = model.state_dict().keys()
    assert any(k.startswith('other_teachers.1.backbone.') for k in keys)


def test_teacher_eval_and_fusing_apply_to_every_teacher(nets, data):
    kwargs = dict(
        architecture=copy.deepcopy(nets['student']),
        teachers=[copy.deepcopy(nets[k]) for k in 'ab'],
        distiller=_distiller())
    plain = MultiTeacherDistill(**copy.deepcopy(kwargs))
    evaluated = MultiTeacherDistill(teacher_eval=True, **copy.deepcopy(kwargs))
    evaluated.train()
    assert all(not t.training for t in evaluated.teachers)
    fused = MultiTeacherDistill(
        fuse_teacher_conv_bn=True, **copy.deepcopy(kwargs))
    for t in fused.teachers:
        assert not any(
            isinstance(m, torch.nn.BatchNorm2d) for m in t.backbone.modules())
    a, b = _losses(plain, data), _losses(fused, data)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6)


def test_record_shapes_must_agree(nets, data):
    narrow = _model(
        5, **{
            'model.neck.out_channels': 32,
            'model.bbox_head.in_channels': 32
        })
    kwargs = dict(
        architecture=copy.deepcopy(nets['student']),
        teachers=[copy.deepcopy(nets['a']), narrow],
        distiller=_distiller())
    message = (r"teacher recorder 'fpn' record 0\[0\]: model.teachers\[0\] "
               r'recorded shape \(2, 64, 8, 8\) but model.teachers\[1\] '
               r'recorded \(2, 32, 8, 8\)')
    with pytest.raises(TeacherRecordError, match=message):
        MultiTeacherDistill(**copy.deepcopy(kwargs))  # build-time dry run
    model = MultiTeacherDistill(check_shapes=False, **copy.deepcopy(kwargs))
    with pytest.raises(
            ValueError,
            match=r"teacher recorder 'fpn' .*model.teachers\[1\] recorded "
            r'\(2, 32, 12, 12\)'):
        _losses(model, data)


def test_checkpoints_are_checked_before_any_model_is_built(
        nets, tmp_path, monkeypatch):
    from mmakd.models.algorithms import flexible_teacher_distill as flexible
    from mmakd.models.algorithms import multi_teacher_distill as multi
    path = _save(nets['a'], tmp_path / 'a.pth')

    def no_build(*args, **kwargs):
        raise AssertionError('models must not be built for a missing ckpt')

    monkeypatch.setattr(flexible, 'build_model_from_spec', no_build)
    monkeypatch.setattr(multi, 'build_model_from_spec', no_build)
    cfg = dict(
        type='MultiTeacherDistill',
        architecture=dict(cfg_path=SMALL),
        teachers=[dict(cfg_path=SMALL)] * 2,
        distiller=_distiller(),
        teacher_ckpts=[path, str(tmp_path / 'missing.pth')])
    with pytest.raises(
            FileNotFoundError,
            match=r"model.teacher_ckpts\[1\]='.*missing.pth'"):
        MODELS.build(cfg)


def test_each_checkpoint_loads_strictly_into_its_teacher(nets, tmp_path):
    paths = [_save(nets[k], tmp_path / f'{k}.pth') for k in 'ab']
    model = MultiTeacherDistill(
        architecture=copy.deepcopy(nets['student']),
        teachers=[copy.deepcopy(nets['student']) for _ in range(2)],
        distiller=_distiller(),
        teacher_ckpts=paths)
    for t, k in zip(model.teachers, 'ab'):
        for name, v in nets[k].state_dict().items():
            assert torch.equal(t.state_dict()[name], v), name
        assert t._is_init
    partial = {
        k: v
        for k, v in nets['b'].state_dict().items()
        if not k.startswith('bbox_head.')
    }
    torch.save(dict(state_dict=partial), paths[1])
    with pytest.raises(
            RuntimeError,
            match=r"model.teacher_ckpts\[1\]='.*b.pth' does not match"):
        MultiTeacherDistill(
            architecture=copy.deepcopy(nets['student']),
            teachers=[copy.deepcopy(nets['student']) for _ in range(2)],
            distiller=_distiller(),
            teacher_ckpts=paths)


def test_teacher_preprocessors_are_each_checked(nets):
    other = _model(6, **{'model.data_preprocessor.bgr_to_rgb': False})
    with pytest.raises(
            ValueError,
            match=r'model.teachers\[1\].data_preprocessor and '
            r'model.architecture.data_preprocessor'):
        MultiTeacherDistill(
            architecture=copy.deepcopy(nets['student']),
            teachers=[copy.deepcopy(nets['a']), other],
            distiller=_distiller())


@pytest.mark.parametrize('kwargs,error', [
    (dict(teachers=[]), 'model.teachers must be a non-empty list'),
    (dict(teacher_ckpts=[None]), r'one checkpoint \(or None\) per teacher: '
     '2 teachers'),
    (dict(combine='max'), 'model.combine must be one of'),
    (dict(teacher=dict(cfg_path=SMALL)), 'set model.teacher and'),
    (dict(teacher_trainable=True), 'frozen teachers only'),
    ('same', r'model.teachers\[1\] is the same module object as '
     r'model.teachers\[0\]'),
])
def test_invalid_settings_name_their_config_key(nets, kwargs, error):
    args = dict(
        architecture=copy.deepcopy(nets['student']),
        teachers=[copy.deepcopy(nets['a']),
                  copy.deepcopy(nets['b'])],
        distiller=_distiller())
    if kwargs == 'same':
        kwargs = dict(teachers=[args['teachers'][0]] * 2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=error):
        MultiTeacherDistill(**args)


def test_registered_in_mmrazor_and_built_from_a_config(tmp_path):
    from mmrazor.registry import MODELS as RAZOR_MODELS
    assert RAZOR_MODELS.get('MultiTeacherDistill') is MultiTeacherDistill
    model = RAZOR_MODELS.build(
        dict(
            type='MultiTeacherDistill',
            architecture=dict(cfg_path=SMALL),
            teachers=[dict(cfg_path=SMALL)] * 2,
            teacher=None,  # as a config inheriting a single-teacher base
            teacher_ckpt=None,
            distiller=_distiller()))
    assert len(model.teachers) == 2
    assert model.teachers[0] is not model.teachers[1]
