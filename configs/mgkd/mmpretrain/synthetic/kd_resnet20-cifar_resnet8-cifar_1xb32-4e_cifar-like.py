# SYNTHETIC DATA: KD baseline (the CIFAR-100 KD config, 0.2 * CE + 0.8 *
# KL at temperature 4) from the synthetic ResNet-20 teacher to a ResNet-8,
# with the student-alone config's schedule (4 epochs).
_base_ = [
    '../kd_resnet56-cifar_resnet20-cifar_1xb64-240e_cifar100.py',
    './_base_/cifar-like.py'
]

train_dataloader = {{_base_.cifar_like_train}}
val_dataloader = {{_base_.cifar_like_test}}
test_dataloader = {{_base_.cifar_like_test}}
custom_imports = {{_base_.cifar_like_imports}}
default_hooks = {{_base_.cifar_like_hooks}}
randomness = {{_base_.cifar_like_randomness}}

teacher_cfg = '{{fileDirname}}/resnet20-cifar_1xb32-4e_cifar-like.py'
student_cfg = '{{fileDirname}}/resnet8-cifar_1xb32-4e_cifar-like.py'
teacher_ckpt = 'work_dirs/resnet20-cifar_1xb32-4e_cifar-like/epoch_4.pth'

model = dict(
    architecture=dict(cfg_path=student_cfg),
    teacher=dict(cfg_path=teacher_cfg),
    teacher_ckpt=teacher_ckpt)

param_scheduler = dict(milestones=[3])
train_cfg = dict(max_epochs=4, val_interval=4)
auto_scale_lr = dict(base_batch_size=32)
