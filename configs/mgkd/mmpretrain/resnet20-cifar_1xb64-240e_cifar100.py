# ResNet-20 on CIFAR-100 alone: the student of ResNet-56 -> ResNet-20 (its
# model is what the distillation configs train) and its vanilla baseline.
_base_ = ['./resnet56-cifar_1xb64-240e_cifar100.py']

model = dict(backbone=dict(depth=20))
