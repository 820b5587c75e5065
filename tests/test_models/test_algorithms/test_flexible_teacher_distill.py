# Copyright (c) mmakd contributors. All rights reserved.
import copy
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper

from mmakd.models import FlexibleTeacherDistill
from mmakd.registry import MODELS
from mmakd.testing import CountHostSyncs, det_batch
from helpers import REPO

OVERLAY = osp.join(
    REPO, 'tests/data/configs/cwd_retinanet-r50_retinanet-r18_shapes.py')
LOCAL_STUDENT = osp.join(REPO,
                         'tests/data/configs/retinanet_r18_fpn_shapes.py')


@pytest.fixture(scope='module')
def overlay_cfg() -> Config:
    return Config.fromfile(OVERLAY)


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_local_student_package_teacher_one_step(overlay_cfg):
    """Student from a local config file, teacher from a package config with
    overrides; one SGD step with MMRazor's CWD distiller."""
    model = MODELS.build(copy.deepcopy(overlay_cfg.model))
    assert isinstance(model, FlexibleTeacherDistill)
    assert model.student.bbox_head.num_classes == 6
    assert model.teacher.bbox_head.num_classes == 6
    assert model.teacher.backbone.depth == 50
    optim = build_optim_wrapper(
        model, dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9)))
    teacher0, student0 = _snapshot(model.teacher), _snapshot(model.student)
    model.train()
    log = model.train_step(det_batch(2, 96, 96, num_classes=6, seed=1), optim)
    assert {f'distill.loss_cwd_fpn{i}' for i in range(5)} <= set(log)
    assert all(torch.isfinite(v) for v in log.values())
    for k, v in model.teacher.state_dict().items():
        assert torch.equal(v, teacher0[k]), k
    changed = [
        k for k, v in model.student.state_dict().items()
        if not torch.equal(v, student0[k])
    ]
    assert any(k.startswith('backbone.') for k in changed)
    assert any(k.startswith('bbox_head.') for k in changed)


def test_teacher_as_local_file_student_inline(overlay_cfg):
    cfg = copy.deepcopy(overlay_cfg.model)
    student = Config.fromfile(LOCAL_STUDENT).model
    cfg.architecture = student.to_dict()
    cfg.teacher = dict(cfg_path=LOCAL_STUDENT)
    model = MODELS.build(cfg)
    assert model.teacher.backbone.depth == 18
    assert model.student is not model.teacher


def test_preprocessor_mismatch_fails_at_build(overlay_cfg):
    cfg = copy.deepcopy(overlay_cfg.model)
    cfg.teacher.cfg_options.update({
        'model.data_preprocessor.mean': [103.53, 116.28, 123.675],
        'model.data_preprocessor.std': [1.0, 1.0, 1.0],
        'model.data_preprocessor.bgr_to_rgb':
        False
    })
    with pytest.raises(ValueError) as info:
        MODELS.build(copy.deepcopy(cfg))
    message = str(info.value)
    assert 'model.teacher.data_preprocessor' in message
    assert 'model.architecture.data_preprocessor' in message
    assert 'channel order' in message
    cfg.check_preprocessors = False
    MODELS.build(cfg)  # explicitly allowed


def test_explicit_algorithm_preprocessor_checked_against_both(overlay_cfg):
    cfg = copy.deepcopy(overlay_cfg.model)
    cfg.data_preprocessor = dict(
        type='mmdet.DetDataPreprocessor',
        mean=[0.0, 0.0, 0.0],
        std=[255.0, 255.0, 255.0],
        bgr_to_rgb=True)
    with pytest.raises(ValueError, match=r'model.data_preprocessor'):
        MODELS.build(cfg)


def test_missing_teacher_checkpoint_is_reported_before_building(
        overlay_cfg, monkeypatch):
    from mmakd.models.algorithms import flexible_teacher_distill as module

    def no_build(*args, **kwargs):
        raise AssertionError('models must not be built for a missing ckpt')

    monkeypatch.setattr(module, 'build_model_from_spec', no_build)
    cfg = copy.deepcopy(overlay_cfg.model)
    cfg.teacher_ckpt = 'work_dirs/missing_teacher.pth'
    with pytest.raises(
            FileNotFoundError, match=r"model.teacher_ckpt='work_dirs/missing"):
        MODELS.build(cfg)


def test_teacher_checkpoint_loaded_strictly(overlay_cfg, tmp_path):
    cfg = copy.deepcopy(overlay_cfg.model)
    source = MODELS.build(copy.deepcopy(cfg))
    path = str(tmp_path / 'teacher.pth')
    torch.save(dict(state_dict=source.teacher.state_dict()), path)
    cfg.teacher_ckpt = path
    model = MODELS.build(copy.deepcopy(cfg))
    for k, v in source.teacher.state_dict().items():
        assert torch.equal(v, model.teacher.state_dict()[k]), k
    assert model.teacher._is_init

    partial = {
        k: v
        for k, v in source.teacher.state_dict().items()
        if not k.startswith('bbox_head.')
    }
    partial['extra.weight'] = torch.zeros(1)
    torch.save(dict(state_dict=partial), path)
    with pytest.raises(RuntimeError) as info:
        MODELS.build(copy.deepcopy(cfg))
    message = str(info.value)
    n_head = sum(
        k.startswith('bbox_head.') for k in source.teacher.state_dict())
    assert f"model.teacher_ckpt='{path}' does not match RetinaNet" in message
    assert f'{n_head} missing keys [bbox_head.' in message
    assert '1 unexpected keys [extra.weight]' in message
    assert 'teacher_ckpt_strict=False' in message
    cfg.teacher_ckpt_strict = False
    relaxed = MODELS.build(cfg)  # loads what matches, warns about the rest
    for k, v in partial.items():
        if k in relaxed.teacher.state_dict():
            assert torch.equal(relaxed.teacher.state_dict()[k], v), k


def test_truncated_teacher_checkpoint_names_the_file(overlay_cfg, tmp_path):
    cfg = copy.deepcopy(overlay_cfg.model)
    path = tmp_path / 'teacher.pth'
    torch.save(dict(state_dict={'w': torch.zeros(100)}), str(path))
    path.write_bytes(path.read_bytes()[:200])  # cut the download short
    cfg.teacher_ckpt = str(path)
    with pytest.raises(
            RuntimeError,
            match=rf"model.teacher_ckpt='{path}' cannot be read "
            r'as a checkpoint \(truncated'):
        MODELS.build(cfg)


# ---------------------------------------------------------------------------
# teacher_forward: run the teacher only as far as its recorders need
# ---------------------------------------------------------------------------
PSP_STUDENT = osp.join(
    REPO, 'configs/akd/demo/pspnet_r18-w8_1xb8-600it_shapes-128.py')
PSP_TEACHER = osp.join(
    REPO, 'configs/akd/demo/pspnet_r18-w32_1xb8-1600it_shapes-128.py')


def _distiller(source,
               recorder='ModuleOutputs',
               loss='ChannelWiseDivergence',
               data_idx=None):
    record = dict(recorder='r', data_idx=data_idx)
    return dict(
        type='ConfigurableDistiller',
        student_recorders=dict(r=dict(type=recorder, source=source)),
        teacher_recorders=dict(r=dict(type=recorder, source=source)),
        distill_losses=dict(loss_kd=dict(type=loss, tau=1.0)),
        loss_forward_mappings=dict(
            loss_kd=dict(
                preds_S=dict(from_student=True, **record),
                preds_T=dict(from_student=False, **record))))


def _conv_seg_algorithm(student, teacher, **kwargs):
    """FlexibleTeacherDistill of ``student`` and ``teacher`` with the
    ``_distiller`` of their ``decode_head.conv_seg`` logits."""
    return FlexibleTeacherDistill(
        architecture=student,
        teacher=teacher,
        distiller=_distiller('decode_head.conv_seg'),
        **kwargs)


def _seg_model(**kwargs):
    from mmakd.models.utils import build_model_from_spec
    with_aux = kwargs.pop('aux', False)
    options = {}
    if with_aux:
        options['model.auxiliary_head'] = dict(
            type='FCNHead',
            in_channels=32,
            in_index=2,
            channels=16,
            num_convs=1,
            concat_input=False,
            dropout_ratio=0.1,
            num_classes=7,
            norm_cfg=dict(type='BN', requires_grad=True),
            align_corners=False,
            loss_decode=dict(
                type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4))
    return build_model_from_spec(
        dict(cfg_path=PSP_STUDENT, cfg_options=options), 'model')


@pytest.mark.parametrize('teacher,source,recorder,expected', [
    ('retina', 'neck', 'ModuleOutputs', 'feat'),
    ('retina', 'backbone.layer2', 'ModuleOutputs', 'feat'),
    ('retina', 'bbox_head.retina_cls', 'ModuleOutputs', 'tensor'),
    ('pspnet', 'decode_head.conv_seg', 'ModuleOutputs', 'tensor'),
    ('pspnet_aux', 'auxiliary_head.conv_seg', 'ModuleOutputs', 'loss'),
    ('pspnet', 'mmseg.models.decode_heads.psp_head.PSPHead.forward',
     'MethodOutputs', 'loss'),
])
def test_auto_picks_the_shortest_equivalent_forward(teacher, source, recorder,
                                                    expected):
    from mmakd.models.utils import build_model_from_spec
    if teacher == 'retina':
        student = build_model_from_spec(dict(cfg_path=LOCAL_STUDENT), 'm')
        teacher_model = build_model_from_spec(
            dict(cfg_path=LOCAL_STUDENT), 'm')
    else:
        student = _seg_model(aux=teacher == 'pspnet_aux')
        teacher_model = _seg_model(aux=teacher == 'pspnet_aux')
    model = FlexibleTeacherDistill(
        architecture=student,
        teacher=teacher_model,
        distiller=_distiller(source, recorder))
    assert model.teacher_forward == expected


def test_two_stage_detector_heads_need_the_loss_forward():
    from mmakd.models.utils import build_model_from_spec
    spec = dict(
        cfg_path='mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
        cfg_options={
            'model.backbone.depth': 18,
            'model.backbone.init_cfg': None,
            'model.neck.in_channels': [64, 128, 256, 512]
        })
    for source, expected in (('neck', 'feat'), ('roi_head.bbox_head.fc_cls',
                                                'loss')):
        model = FlexibleTeacherDistill(
            architecture=build_model_from_spec(spec, 'm'),
            teacher=build_model_from_spec(spec, 'm'),
            distiller=_distiller(source))
        assert model.teacher_forward == expected


@pytest.mark.parametrize('value,error', [('fast', 'must be one of'),
                                         ('feat', 'cannot train the teacher')])
def test_teacher_forward_validation(value, error):
    kwargs = dict(teacher_trainable=True) if value == 'feat' else {}
    with pytest.raises(ValueError, match=error):
        _conv_seg_algorithm(
            _seg_model(), _seg_model(), teacher_forward=value, **kwargs)


def test_truncated_forward_that_misses_a_recorder_is_reported():
    model = _conv_seg_algorithm(
        _seg_model(), _seg_model(), teacher_forward='feat')
    data = model.data_preprocessor(_seg_batch(), True)
    with pytest.raises(
            RuntimeError,
            match=r"recorder 'r' \(source 'decode_head.conv_seg'\)"
            r".*teacher_forward='loss'"):
        model.loss(data['inputs'], data['data_samples'])


def _seg_batch():
    from mmakd.testing import seg_batch
    return seg_batch(2, 64, 64, num_classes=7, seed=3)


def _same_weights_pair(ours_cls_kwargs,
                       theirs_cls,
                       student,
                       teacher,
                       distiller,
                       device='cpu'):
    """Our algorithm and MMRazor's, with identical weights, on
    ``device``."""
    ours = FlexibleTeacherDistill(
        architecture=copy.deepcopy(student),
        teacher=copy.deepcopy(teacher),
        distiller=copy.deepcopy(distiller),
        **ours_cls_kwargs)
    theirs = theirs_cls(
        architecture=copy.deepcopy(student),
        teacher=copy.deepcopy(teacher),
        distiller=copy.deepcopy(distiller))
    theirs.load_state_dict(ours.state_dict())
    ours.to(device).train()
    theirs.to(device).train()
    return ours, theirs


def _losses_with_seed(model, data, seed=7):
    torch.manual_seed(seed)
    return {
        k:
        torch.stack([x.detach()
                     for x in v]) if isinstance(v, list) else v.detach()
        for k, v in model.loss(**data).items()
    }


def test_tensor_mode_losses_equal_mmrazor_single_teacher_distill(device):
    """PSPNet logits with an auxiliary head: MMRazor runs the teacher's
    full loss (decode + auxiliary heads), we run decode_head only. With the
    dropout layers off (their random draws would otherwise be consumed in
    a different order) every loss is identical, on ``--device`` too."""
    from mmrazor.models import SingleTeacherDistill
    student, teacher = _seg_model(aux=True), _seg_model(aux=True)
    for m in list(student.modules()) + list(teacher.modules()):
        if isinstance(m, torch.nn.Dropout2d) or isinstance(
                m, torch.nn.Dropout):
            m.p = 0.0
    ours, theirs = _same_weights_pair({}, SingleTeacherDistill, student,
                                      teacher,
                                      _distiller('decode_head.conv_seg'),
                                      device)
    assert ours.teacher_forward == 'tensor'
    batch = ours.data_preprocessor(_seg_batch(), True)
    assert batch['inputs'].device == device
    data = dict(
        batch_inputs=batch['inputs'], data_samples=batch['data_samples'])
    a, b = _losses_with_seed(ours, data), _losses_with_seed(theirs, data)
    assert set(a) == set(b)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-7)


def test_feat_mode_losses_equal_mmrazor_fpn_teacher_distill(device):
    """RetinaNet's FPN: ``extract_feat`` only, the losses of MMRazor's
    algorithms (which run more of the teacher), on ``--device`` too."""
    from mmrazor.models import FpnTeacherDistill, SingleTeacherDistill

    from mmakd.models.utils import build_model_from_spec
    student = build_model_from_spec(dict(cfg_path=LOCAL_STUDENT), 'm')
    teacher = build_model_from_spec(dict(cfg_path=LOCAL_STUDENT), 'm')
    distiller = _distiller('neck', data_idx=1)
    batch = det_batch(2, 96, 96, num_classes=6, seed=2)
    for theirs_cls in (FpnTeacherDistill, SingleTeacherDistill):
        ours, theirs = _same_weights_pair({}, theirs_cls, student, teacher,
                                          distiller, device)
        assert ours.teacher_forward == 'feat'
        data = ours.data_preprocessor(batch, True)
        assert data['inputs'].device == device
        data = dict(
            batch_inputs=data['inputs'], data_samples=data['data_samples'])
        a, b = _losses_with_seed(ours, data), _losses_with_seed(theirs, data)
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-7)


def test_fused_teacher_losses_match_the_unfused_ones():
    """fuse_teacher_conv_bn folds the teacher's BatchNorms: the same
    losses as MMRazor's algorithm up to float rounding, a plain teacher
    checkpoint still loads, and the algorithm's own state_dict round-trips
    into an algorithm built the same way."""
    from mmrazor.models import SingleTeacherDistill
    from torch.nn.modules.batchnorm import _BatchNorm
    student, teacher = _seg_model(), _seg_model()
    g = torch.Generator().manual_seed(0)
    for m in list(student.modules()) + list(teacher.modules()):
        if isinstance(m, (torch.nn.Dropout2d, torch.nn.Dropout)):
            m.p = 0.0
        if isinstance(m, _BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + .5)
    distiller = _distiller('decode_head.conv_seg')
    theirs = SingleTeacherDistill(
        architecture=copy.deepcopy(student),
        teacher=copy.deepcopy(teacher),
        distiller=copy.deepcopy(distiller))
    ours = FlexibleTeacherDistill(
        architecture=copy.deepcopy(student),
        teacher=copy.deepcopy(teacher),
        distiller=copy.deepcopy(distiller),
        fuse_teacher_conv_bn=True)
    n_bn = sum(isinstance(m, _BatchNorm) for m in teacher.modules())
    assert len(ours.fused_teacher_convs) == n_bn > 20
    assert not any(isinstance(m, _BatchNorm) for m in ours.teacher.modules())
    assert not any(p.requires_grad for p in ours.teacher.parameters())
    ours.train()
    theirs.train()
    batch = ours.data_preprocessor(_seg_batch(), True)
    data = dict(
        batch_inputs=batch['inputs'], data_samples=batch['data_samples'])
    a, b = _losses_with_seed(ours, data), _losses_with_seed(theirs, data)
    assert set(a) == set(b)
    assert a['distill.loss_kd'] > 0
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)
    again = FlexibleTeacherDistill(
        architecture=copy.deepcopy(student),
        teacher=copy.deepcopy(teacher),
        distiller=copy.deepcopy(distiller),
        fuse_teacher_conv_bn=True)
    again.load_state_dict(ours.state_dict(), strict=True)


def test_fused_teacher_keeps_recorded_pairs():
    """A recorder on a BatchNorm's output keeps that BatchNorm."""
    source = 'backbone.layer4.0.bn2'
    model = FlexibleTeacherDistill(
        architecture=_seg_model(),
        teacher=_seg_model(),
        distiller=_distiller(source),
        fuse_teacher_conv_bn=True)
    assert isinstance(
        model.teacher.get_submodule(source), torch.nn.BatchNorm2d)
    assert 'backbone.layer4.0.conv2' not in model.fused_teacher_convs
    assert 'backbone.layer4.0.conv1' in model.fused_teacher_convs


def test_fusing_a_trainable_teacher_is_refused():
    with pytest.raises(
            ValueError,
            match='model.fuse_teacher_conv_bn=True '
            'needs a frozen teacher'):
        _conv_seg_algorithm(
            _seg_model(),
            _seg_model(),
            teacher_trainable=True,
            fuse_teacher_conv_bn=True)


# ---------------------------------------------------------------------------
# build-time validation and the non-finite policy
# ---------------------------------------------------------------------------
def _psp_pair():
    from mmakd.models.utils import build_model_from_spec
    return (build_model_from_spec(dict(cfg_path=PSP_STUDENT), 'm'),
            build_model_from_spec(dict(cfg_path=PSP_TEACHER), 'm'))


def test_recorder_source_that_is_not_a_module():
    student, teacher = _psp_pair()
    distiller = _distiller('decode_head.conv_seg')
    distiller['teacher_recorders']['r']['source'] = 'decode_head.conv_sg'
    with pytest.raises(ValueError) as info:
        FlexibleTeacherDistill(
            architecture=student, teacher=teacher, distiller=distiller)
    message = str(info.value)
    assert message.startswith(
        "model.distiller.teacher_recorders.r.source='decode_head.conv_sg' "
        'is not a module of EncoderDecoder')
    assert "did you mean ['decode_head.conv_seg'" in message


def test_method_recorder_that_cannot_be_imported():
    student, teacher = _psp_pair()
    distiller = _distiller(
        'mmseg.models.decode_heads.NoSuchHead.forward',
        recorder='MethodOutputs')
    with pytest.raises(
            ValueError,
            match=r'student_recorders.r.source=.*cannot be '
            r'imported'):
        FlexibleTeacherDistill(
            architecture=student, teacher=teacher, distiller=distiller)


def test_record_shapes_that_no_connector_aligns():
    """Student bottleneck (32 channels) vs teacher bottleneck (64)."""
    student, teacher = _psp_pair()
    distiller = _distiller('decode_head.bottleneck')
    with pytest.raises(ValueError) as info:
        FlexibleTeacherDistill(
            architecture=copy.deepcopy(student),
            teacher=copy.deepcopy(teacher),
            distiller=copy.deepcopy(distiller))
    message = str(info.value)
    assert 'model.distiller.loss_forward_mappings.loss_kd' in message
    assert "'preds_S' has per-sample shape(s) [(32, 8, 8)]" in message
    assert "'preds_T' [(64, 8, 8)]" in message
    assert 'no connector aligns them' in message

    def with_connector(out_channel):
        cfg = copy.deepcopy(distiller)
        cfg['connectors'] = dict(
            align=dict(
                type='ConvModuleConnector',
                in_channel=32,
                out_channel=out_channel,
                kernel_size=1))
        cfg['loss_forward_mappings']['loss_kd']['preds_S'][
            'connector'] = 'align'
        return FlexibleTeacherDistill(
            architecture=copy.deepcopy(student),
            teacher=copy.deepcopy(teacher),
            distiller=cfg)

    with_connector(64)  # aligned: builds
    with pytest.raises(ValueError, match='the connector does not align'):
        with_connector(48)
    FlexibleTeacherDistill(
        architecture=student,
        teacher=teacher,
        distiller=distiller,
        check_shapes=False)


@pytest.mark.parametrize('policy', ['raise', 'skip'])
def test_nonfinite_distillation_losses(policy, monkeypatch):
    student, teacher = _psp_pair()
    model = _conv_seg_algorithm(student, teacher, nonfinite=policy)
    monkeypatch.setattr(
        model.distiller, 'compute_distill_losses', lambda: dict(
            loss_kd=torch.tensor(float('nan')), other_loss=torch.tensor(1.0)))
    data = model.data_preprocessor(_seg_batch(), True)
    if policy == 'raise':
        with pytest.raises(
                FloatingPointError,
                match=r"\['loss_kd'\] are NaN or Inf.*"
                r"model.nonfinite='skip'"):
            model.loss(data['inputs'], data['data_samples'])
    else:
        losses = model.loss(data['inputs'], data['data_samples'])
        assert not any(k.startswith('distill.') for k in losses)
        assert torch.isfinite(losses['student.decode.loss_ce'])


def test_invalid_nonfinite_policy():
    student, teacher = _psp_pair()
    with pytest.raises(ValueError, match="model.nonfinite must be 'raise'"):
        _conv_seg_algorithm(student, teacher, nonfinite='ignore')


# ---------------------------------------------------------------------------
# one device-to-host synchronisation for all finiteness checks
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('akd', [False, True])
def test_finiteness_checks_cost_one_synchronisation(overlay_cfg, akd, device):
    """The issue's case: CWD on the 5 FPN levels (6 synchronisations per
    iteration with AKD before: one per AKD loss plus the algorithm's); on
    ``--device`` (where a synchronisation waits for the device) too."""
    cfg = copy.deepcopy(overlay_cfg.model)
    if akd:
        cfg.distiller.type = 'AvatarDistiller'
        cfg.distiller.avatars = dict(num_avatars=2)
    model = MODELS.build(cfg).to(device)
    model.train()
    data = model.data_preprocessor(
        det_batch(2, 64, 64, num_classes=6, seed=0), True)
    assert data['inputs'].device == device
    with model.distiller.teacher_recorders, torch.no_grad():
        model.teacher.extract_feat(data['inputs'])
    with model.distiller.student_recorders:
        model.student.extract_feat(data['inputs'])
    with CountHostSyncs() as syncs:
        losses = model._distill_losses()
    assert syncs.count == 1
    assert len([k for k in losses if k.startswith('loss_cwd')]) == 5
    # the distiller alone (under another algorithm) also syncs once
    if akd:
        model.distiller.defer_finite_check = False
        with CountHostSyncs() as syncs:
            model.distiller.compute_distill_losses()
        assert syncs.count == 1


def test_nonfinite_teacher_still_named_after_the_single_check(overlay_cfg):
    cfg = copy.deepcopy(overlay_cfg.model)
    cfg.distiller.type = 'AvatarDistiller'
    model = MODELS.build(cfg)
    assert model.distiller.defer_finite_check
    with torch.no_grad():
        model.teacher.neck.fpn_convs[1].conv.bias[0] = float('inf')
    data = model.data_preprocessor(
        det_batch(2, 64, 64, num_classes=6, seed=0), True)
    with pytest.raises(FloatingPointError) as info:
        model.loss(data['inputs'], data['data_samples'])
    message = str(info.value)
    assert "preds_T (recorder 'fpn') holds NaN or Inf" in message
    assert "model.nonfinite='skip'" in message


# ---------------------------------------------------------------------------
# teacher_eval
# ---------------------------------------------------------------------------
def test_teacher_eval_turns_the_teachers_dropout_off():
    """PSPNet's Dropout2d(0.1) before conv_seg perturbs the recorded logits
    of MMRazor's train-mode teacher; teacher_eval=True gives the vanilla
    teacher's logits, stays on through model.train(), and leaves the
    student in training mode."""
    student, teacher = _psp_pair()
    distiller = _distiller('decode_head.conv_seg')
    data = None
    records = {}
    for teacher_eval in (False, True):
        model = FlexibleTeacherDistill(
            architecture=copy.deepcopy(student),
            teacher=copy.deepcopy(teacher),
            distiller=copy.deepcopy(distiller),
            teacher_eval=teacher_eval)
        model.train()
        assert model.student.training
        dropouts = [
            m for m in model.teacher.modules()
            if isinstance(m, torch.nn.Dropout2d)
        ]
        assert dropouts and all(m.training != teacher_eval for m in dropouts)
        assert model.teacher.training != teacher_eval
        if data is None:
            data = model.data_preprocessor(_seg_batch(), True)
        runs = []
        for seed in (0, 1):
            torch.manual_seed(seed)
            model.loss(data['inputs'], data['data_samples'])
            runs.append(model.distiller.get_record('r', False).clone())
        records[teacher_eval] = runs
    assert not torch.equal(*records[False])  # dropout: differs per call
    assert torch.equal(*records[True])  # eval: the vanilla teacher
    with torch.no_grad():
        vanilla = copy.deepcopy(teacher).eval()(data['inputs'], mode='tensor')
    torch.testing.assert_close(records[True][0], vanilla)


def test_teacher_eval_validation():
    student, teacher = _psp_pair()
    with pytest.raises(
            ValueError,
            match='model.teacher_eval=True .* '
            'model.teacher_trainable=False'):
        _conv_seg_algorithm(
            student, teacher, teacher_eval=True, teacher_trainable=True)
    with pytest.raises(TypeError, match='model.teacher_eval must be'):
        _conv_seg_algorithm(student, teacher, teacher_eval='yes')
