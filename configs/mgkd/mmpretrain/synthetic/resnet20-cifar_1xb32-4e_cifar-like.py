# SYNTHETIC DATA: the teacher of the synthetic run, the CIFAR-100 teacher
# config with a ResNet-20 on the 20-class generated CIFAR-like dataset,
# 4 epochs (about two minutes on 2 CPU cores).
_base_ = ['../resnet56-cifar_1xb64-240e_cifar100.py', './_base_/cifar-like.py']

train_dataloader = {{_base_.cifar_like_train}}
val_dataloader = {{_base_.cifar_like_test}}
test_dataloader = {{_base_.cifar_like_test}}
custom_imports = {{_base_.cifar_like_imports}}
default_hooks = {{_base_.cifar_like_hooks}}
randomness = {{_base_.cifar_like_randomness}}

model = dict(
    backbone=dict(depth=20),
    head=dict(num_classes={{_base_.cifar_like_classes}}))

param_scheduler = dict(milestones=[3])
train_cfg = dict(max_epochs=4, val_interval=4)
auto_scale_lr = dict(base_batch_size=32)
