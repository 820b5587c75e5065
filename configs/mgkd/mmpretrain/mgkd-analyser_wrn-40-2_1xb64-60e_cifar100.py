# Multi-granularity distillation, stage 1 on the WRN-40-2 teacher (pooled
# feature of 128 channels); see the ResNet-56 config.
_base_ = ['./mgkd-analyser_resnet56-cifar_1xb64-60e_cifar100.py']

teacher_cfg = '{{fileDirname}}/wrn-40-2_1xb64-240e_cifar100.py'
teacher_ckpt = 'work_dirs/wrn-40-2_1xb64-240e_cifar100/epoch_240.pth'

model = dict(
    teacher=dict(cfg_path=teacher_cfg),
    teacher_ckpt=teacher_ckpt,
    analyser=dict(in_channels=128))
