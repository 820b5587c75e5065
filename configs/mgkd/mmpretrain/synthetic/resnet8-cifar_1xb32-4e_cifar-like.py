# SYNTHETIC DATA: the student alone (no distillation), a CIFAR ResNet-8 on
# the generated CIFAR-like dataset, with the teacher's schedule.
_base_ = ['./resnet20-cifar_1xb32-4e_cifar-like.py']

model = dict(backbone=dict(depth=8))
