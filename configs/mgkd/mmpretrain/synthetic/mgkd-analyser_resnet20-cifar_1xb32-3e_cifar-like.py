# SYNTHETIC DATA: multi-granularity distillation stage 1 (the CIFAR-100
# analyser config) on the synthetic ResNet-20 teacher, 3 epochs at lr 0.05:
# only the two tubes train, on the frozen teacher; the last checkpoint feeds
# stage 2.
_base_ = [
    '../mgkd-analyser_resnet56-cifar_1xb64-60e_cifar100.py',
    './_base_/cifar-like.py'
]

train_dataloader = {{_base_.cifar_like_train}}
val_dataloader = {{_base_.cifar_like_test}}
test_dataloader = {{_base_.cifar_like_test}}
custom_imports = {{_base_.cifar_like_imports}}
default_hooks = {{_base_.cifar_like_hooks}}
randomness = {{_base_.cifar_like_randomness}}

teacher_cfg = '{{fileDirname}}/resnet20-cifar_1xb32-4e_cifar-like.py'
teacher_ckpt = 'work_dirs/resnet20-cifar_1xb32-4e_cifar-like/epoch_4.pth'

model = dict(
    teacher=dict(cfg_path=teacher_cfg),
    teacher_ckpt=teacher_ckpt,
    analyser=dict(num_classes={{_base_.cifar_like_classes}}))

# 96 iterations instead of the paper's 47k: a larger learning rate.
optim_wrapper = dict(optimizer=dict(lr=0.05))
param_scheduler = dict(milestones=[2])
train_cfg = dict(max_epochs=3, val_interval=3)
auto_scale_lr = dict(base_batch_size=32)
