# ResNet-56 on CIFAR-100: the teacher of ResNet-56 -> ResNet-20, trained
# with the reference code's teacher schedule.
_base_ = [
    './_base_/models/cifar-resnet.py', './_base_/datasets/cifar100_bs64.py',
    './_base_/schedules/cifar100_240e_teacher.py', './_base_/cifar_runtime.py'
]

model = dict(backbone=dict(depth=56))
