# Multi-granularity distillation, stage 1 (the self-analysing module):
# freeze the trained ResNet-56 and train two encoder/decoder tubes on its
# pooled feature -- narrow (64-d bottleneck, KL at temperature 2) and wide
# (256-d, temperature 8) -- each decoder against the teacher's logits plus
# cross-entropy on the labels. The last checkpoint (epoch_60.pth) holds
# `analyser.*`, which the distillation configs load (`analyser_ckpt`).
# Validation reports the narrow tube's top-1 (model.predict_tube=0).
_base_ = [
    './_base_/datasets/cifar100_bs64.py',
    './_base_/schedules/cifar100_60e_analyser.py', './_base_/cifar_runtime.py'
]

# The algorithm runs its model's own data preprocessor (stage 1: the
# teacher's; stage 2: the student's, checked against the teacher's); keep
# the dataset config's top-level one out of the algorithm.
data_preprocessor = None

teacher_cfg = '{{fileDirname}}/resnet56-cifar_1xb64-240e_cifar100.py'
# Written by `python tools/train.py configs/mgkd/mmpretrain/resnet56-cifar_1xb64-240e_cifar100.py`  # noqa: E501
teacher_ckpt = 'work_dirs/resnet56-cifar_1xb64-240e_cifar100/epoch_240.pth'

model = dict(
    _scope_='mmrazor',
    type='MGKDAnalyserTrainer',
    teacher=dict(cfg_path=teacher_cfg),
    teacher_ckpt=teacher_ckpt,
    # The classifier's input (the pooled feature) and output (the logits).
    recorders=dict(
        feature=dict(type='ModuleInputs', source='head.fc'),
        logits=dict(type='ModuleOutputs', source='head.fc')),
    analyser=dict(
        type='MGKDAnalyser',
        in_channels=64,
        num_classes=100,
        bottlenecks=(64, 256)),
    tube_losses=[
        dict(type='MGKDGranularityLoss', tau=2.0, loss_weight=1.0),
        dict(type='MGKDGranularityLoss', tau=8.0, loss_weight=1.0)
    ],
    ce_weight=1.0,
    predict_tube=0)
