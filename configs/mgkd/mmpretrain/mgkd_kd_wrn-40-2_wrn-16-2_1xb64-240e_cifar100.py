# KD + multi-granularity distillation (granularity-wise distillation and
# stable excitation), WRN-40-2 -> WRN-16-2 on CIFAR-100; the paper's
# headline setting (KD 73.59 -> 75.35). See the ResNet-56 -> ResNet-20
# config; only the models and the feature widths (128) differ.
_base_ = ['./mgkd_kd_resnet56-cifar_resnet20-cifar_1xb64-240e_cifar100.py']

teacher_cfg = '{{fileDirname}}/wrn-40-2_1xb64-240e_cifar100.py'
student_cfg = '{{fileDirname}}/wrn-16-2_1xb64-240e_cifar100.py'
teacher_ckpt = 'work_dirs/wrn-40-2_1xb64-240e_cifar100/epoch_240.pth'
analyser_ckpt = 'work_dirs/mgkd-analyser_wrn-40-2_1xb64-60e_cifar100/epoch_60.pth'  # noqa: E501

model = dict(
    architecture=dict(cfg_path=student_cfg),
    teacher=dict(cfg_path=teacher_cfg),
    teacher_ckpt=teacher_ckpt,
    distiller=dict(
        connectors=dict(
            s_tubes=dict(in_channels=128),
            t_tubes=dict(in_channels=128, checkpoint=analyser_ckpt))))
