# Copyright (c) mmakd contributors. All rights reserved.
"""MGKDAnalyserTrainer (stage 1): only the tubes learn, the teacher stays
frozen in eval mode, losses as specified, validation with a tube, dense
logits, validation errors."""
import copy

import pytest
import torch
import torch.nn.functional as F
from mmengine.optim import build_optim_wrapper

from mmakd.models import MGKDAnalyserTrainer, MGKDGranularityLoss
from mmakd.registry import MODELS

NUM_CLASSES = 5
TEACHER = dict(
    _scope_='mmpretrain',
    type='ImageClassifier',
    backbone=dict(type='mmrazor.CifarResNet', depth=8),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=NUM_CLASSES, in_channels=64),
    data_preprocessor=dict(
        type='ClsDataPreprocessor',
        mean=[129.3, 124.1, 112.4],
        std=[68.2, 65.4, 70.4],
        num_classes=NUM_CLASSES))


def cls_batch(n=4, seed=0):
    from mmpretrain.structures import DataSample
    gen = torch.Generator().manual_seed(seed)
    return dict(
        inputs=[
            torch.randint(0, 256, (3, 32, 32), generator=gen).to(torch.uint8)
            for _ in range(n)
        ],
        data_samples=[
            DataSample().set_gt_label(i % NUM_CLASSES) for i in range(n)
        ])


def build(**kwargs):
    cfg = dict(
        type='MGKDAnalyserTrainer',
        teacher=copy.deepcopy(TEACHER),
        analyser=dict(in_channels=64, num_classes=NUM_CLASSES))
    cfg.update(kwargs)
    return MODELS.build(cfg)


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_one_step_trains_only_the_tubes():
    torch.manual_seed(0)
    model = build()
    optim = build_optim_wrapper(
        model, dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9)))
    teacher0, tubes0 = snapshot(model.teacher), snapshot(model.analyser)
    model.train()
    assert not model.teacher.training and model.analyser.training
    log = model.train_step(cls_batch(), optim)
    assert set(log) == {
        'loss', 'loss_kl_narrow', 'loss_ce_narrow', 'acc_narrow',
        'loss_kl_wide', 'loss_ce_wide', 'acc_wide'
    }
    # Teacher weights and BN running statistics are untouched (eval mode).
    for key, value in model.teacher.state_dict().items():
        assert torch.equal(value, teacher0[key]), key
    for key, value in model.analyser.state_dict().items():
        assert not torch.equal(value, tubes0[key]), key
    assert not any(p.requires_grad for p in model.teacher.parameters())


def test_gradients_reach_only_the_tubes():
    model = build()
    model.train()
    data = model.data_preprocessor(cls_batch(), training=True)
    losses = model(**data, mode='loss')
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for p in model.analyser.parameters())


def test_losses_are_kl_at_the_tube_temperature_plus_ce():
    """L_g = tau_g^2 KL(softmax(T / tau_g) || softmax(D_g / tau_g)) + CE,
    recomputed from the teacher's logits and the tubes run by hand."""
    torch.manual_seed(1)
    model = build(ce_weight=0.5)
    model.train()
    data = model.data_preprocessor(cls_batch(6, seed=2), training=True)
    losses = model(**data, mode='loss')
    with torch.no_grad():
        logits = model.teacher(data['inputs'], mode='tensor')
        feature = model.teacher.neck(model.teacher.backbone(
            data['inputs']))[-1]
    labels = torch.tensor([i % NUM_CLASSES for i in range(6)])
    for name, g, tau in (('narrow', 0, 2.0), ('wide', 1, 8.0)):
        _, tube_logits = model.analyser.tubes[g](feature)
        expected_kl = MGKDGranularityLoss(tau=tau)(tube_logits, logits)
        torch.testing.assert_close(losses[f'loss_kl_{name}'], expected_kl)
        torch.testing.assert_close(losses[f'loss_ce_{name}'],
                                   0.5 * F.cross_entropy(tube_logits, labels))
        acc = (tube_logits.argmax(1) == labels).float().mean() * 100
        torch.testing.assert_close(losses[f'acc_{name}'], acc)


def test_validation_predicts_with_the_chosen_tube():
    torch.manual_seed(2)
    model = build(predict_tube=1)
    model.eval()
    batch = cls_batch(3)
    preds = model.val_step(copy.deepcopy(batch))
    data = model.data_preprocessor(batch)
    codes_and_logits = model(data['inputs'], mode='tensor')
    wide = codes_and_logits[3].softmax(1)
    for sample, score in zip(preds, wide):
        torch.testing.assert_close(sample.pred_score, score)
        assert sample.pred_label.item() == score.argmax().item()
    teacher_preds = build(predict_tube=None)
    teacher_preds.teacher.load_state_dict(model.teacher.state_dict())
    teacher_preds.eval()
    preds = teacher_preds.val_step(copy.deepcopy(batch))
    with torch.no_grad():
        logits = model.teacher(data['inputs'], mode='tensor').softmax(1)
    torch.testing.assert_close(preds[0].pred_score, logits[0])


def test_dense_teacher_upsamples_logits_for_the_cross_entropy():
    """A tiny MMSegmentation teacher: tubes on every pixel of the feature its
    classifier (conv_seg) reads; the label map is larger than the logits and
    holds ignored pixels (255)."""
    from mmakd.testing import seg_batch
    teacher = dict(
        _scope_='mmseg',
        type='EncoderDecoder',
        data_preprocessor=dict(
            type='SegDataPreProcessor',
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
            bgr_to_rgb=True,
            size=(32, 32)),
        backbone=dict(
            type='ResNetV1c',
            depth=18,
            num_stages=2,
            out_indices=(1, ),
            strides=(1, 2),
            dilations=(1, 1)),
        decode_head=dict(
            type='FCNHead',
            in_channels=128,
            in_index=0,
            channels=16,
            num_convs=1,
            num_classes=4,
            dropout_ratio=0.1,
            loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0)))
    model = MODELS.build(
        dict(
            type='MGKDAnalyserTrainer',
            teacher=teacher,
            analyser=dict(in_channels=16, num_classes=4),
            recorders=dict(
                feature=dict(
                    type='ModuleInputs', source='decode_head.conv_seg'),
                logits=dict(
                    type='ModuleOutputs', source='decode_head.conv_seg')),
            predict_tube=None))
    batch = seg_batch(2, 32, 32, num_classes=4, seed=0)
    batch['data_samples'][0].gt_sem_seg.data[0, :4] = 255
    optim = build_optim_wrapper(model,
                                dict(optimizer=dict(type='SGD', lr=0.1)))
    teacher0 = snapshot(model.teacher)
    model.train()
    log = model.train_step(batch, optim)
    assert torch.isfinite(log['loss'])
    for key, value in model.teacher.state_dict().items():
        assert torch.equal(value, teacher0[key]), key
    codes = model(model.data_preprocessor(batch)['inputs'], mode='tensor')
    assert codes[0].shape[:2] == (2, 64) and codes[2].shape[:2] == (2, 4)
    assert codes[2].shape[2:] == (4, 4)  # the feature's, labels: 32x32


def test_missing_teacher_checkpoint_names_the_key(tmp_path):
    with pytest.raises(FileNotFoundError, match='model.teacher_ckpt'):
        build(teacher_ckpt=str(tmp_path / 'epoch_240.pth'))


@pytest.mark.parametrize('kwargs, match', [
    (dict(analyser=dict(in_channels=64)), 'model.analyser.num_classes'),
    (dict(tube_losses=[dict(type='MGKDGranularityLoss')]),
     'model.tube_losses'),
    (dict(recorders=dict(feature=dict(type='ModuleInputs', source='head.fc'))),
     'model.recorders'),
    (dict(predict_tube=2), 'model.predict_tube'),
])
def test_bad_settings_name_the_key(kwargs, match):
    with pytest.raises((ValueError, KeyError), match=match):
        build(**kwargs)


def test_teacher_checkpoint_loads_and_is_kept_by_init_weights(tmp_path):
    torch.manual_seed(4)
    source = MODELS.build(copy.deepcopy(TEACHER))
    path = str(tmp_path / 'teacher.pth')
    torch.save(dict(state_dict=source.state_dict()), path)
    model = build(teacher_ckpt=path)
    model.init_weights()
    for key, value in source.state_dict().items():
        assert torch.equal(model.teacher.state_dict()[key], value), key
    assert isinstance(model, MGKDAnalyserTrainer)


def test_recorder_source_typo_names_the_key():
    with pytest.raises(ValueError, match=r'model.recorders.feature.source'):
        build(
            recorders=dict(
                feature=dict(type='ModuleInputs', source='head.fcc'),
                logits=dict(type='ModuleOutputs', source='head.fc')))


def test_mismatched_teacher_checkpoint_names_the_key(tmp_path):
    path = str(tmp_path / 'other.pth')
    torch.save(
        dict(state_dict={'backbone.conv1.weight': torch.zeros(1)}), path)
    with pytest.raises(RuntimeError, match='model.teacher_ckpt'):
        build(teacher_ckpt=path)
