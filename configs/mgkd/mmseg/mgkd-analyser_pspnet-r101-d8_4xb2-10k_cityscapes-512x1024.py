# Multi-granularity distillation, stage 1, dense variant: freeze the trained
# PSPNet R101-d8 (Cityscapes) and train the two tubes position-wise on the
# feature its classifier (decode_head.conv_seg, a 1x1 convolution) reads:
# every pixel's 512-d feature goes through the narrow (64-d, KL at
# temperature 2) and the wide (256-d, temperature 8) tube, whose decoders
# predict the 19 class scores, matched to the teacher's per-pixel scores
# plus cross-entropy on the labels (logits upsampled to the label map,
# 255 ignored). The last checkpoint (iter_10000.pth) holds `analyser.*` for
# the distillation configs. The schedule is not from the paper (it has no
# dense experiments): SGD lr 0.01 as in its CIFAR stage 1, 10k iterations.
_base_ = [
    'mmseg::_base_/datasets/cityscapes.py', 'mmseg::_base_/default_runtime.py'
]

custom_imports = dict(imports=['mmakd'], allow_failed_imports=False)

teacher_ckpt = 'https://download.openmmlab.com/mmsegmentation/v0.5/pspnet/pspnet_r101-d8_512x1024_80k_cityscapes/pspnet_r101-d8_512x1024_80k_cityscapes_20200606_112211-e1e1100f.pth'  # noqa: E501
teacher_cfg_path = 'mmseg::pspnet/pspnet_r101-d8_4xb2-80k_cityscapes-512x1024.py'  # noqa: E501

model = dict(
    _scope_='mmrazor',
    type='MGKDAnalyserTrainer',
    teacher=dict(cfg_path=teacher_cfg_path, pretrained=False),
    teacher_ckpt=teacher_ckpt,
    recorders=dict(
        feature=dict(type='ModuleInputs', source='decode_head.conv_seg'),
        logits=dict(type='ModuleOutputs', source='decode_head.conv_seg')),
    analyser=dict(
        type='MGKDAnalyser',
        in_channels=512,
        num_classes=19,
        bottlenecks=(64, 256)),
    tube_losses=[
        dict(type='MGKDGranularityLoss', tau=2.0, loss_weight=1.0),
        dict(type='MGKDGranularityLoss', tau=8.0, loss_weight=1.0)
    ],
    ce_weight=1.0,
    ignore_index=255,
    align_corners=False,
    # Tube predictions replace the teacher's only for classification.
    predict_tube=None)

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=5e-4))
param_scheduler = dict(
    type='MultiStepLR', by_epoch=False, milestones=[5000, 7500], gamma=0.1)
train_cfg = dict(type='IterBasedTrainLoop', max_iters=10000)
# The tubes' quality shows in the training log (loss_kl_*, acc_*); the
# teacher alone would be validated, so there is no validation.
val_cfg = None
val_dataloader = None
val_evaluator = None
test_cfg = None
test_dataloader = None
test_evaluator = None
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=10000))
