# WRN-40-2 on CIFAR-100: the teacher of WRN-40-2 -> WRN-16-2, trained with
# the reference code's teacher schedule.
_base_ = [
    './_base_/models/cifar-wrn.py', './_base_/datasets/cifar100_bs64.py',
    './_base_/schedules/cifar100_240e_teacher.py', './_base_/cifar_runtime.py'
]

model = dict(backbone=dict(depth=40, widen_factor=2))
