# KD baseline (the twin of mgkd_kd_*): WRN-40-2 -> WRN-16-2 on CIFAR-100,
# the KD setting of the ResNet-56 -> ResNet-20 config.
_base_ = ['./kd_resnet56-cifar_resnet20-cifar_1xb64-240e_cifar100.py']

teacher_cfg = '{{fileDirname}}/wrn-40-2_1xb64-240e_cifar100.py'
student_cfg = '{{fileDirname}}/wrn-16-2_1xb64-240e_cifar100.py'
teacher_ckpt = 'work_dirs/wrn-40-2_1xb64-240e_cifar100/epoch_240.pth'

model = dict(
    architecture=dict(cfg_path=student_cfg),
    teacher=dict(cfg_path=teacher_cfg),
    teacher_ckpt=teacher_ckpt)
