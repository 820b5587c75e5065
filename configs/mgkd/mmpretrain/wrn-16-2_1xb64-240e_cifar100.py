# WRN-16-2 on CIFAR-100 alone: the student of WRN-40-2 -> WRN-16-2 and its
# vanilla baseline.
_base_ = ['./wrn-40-2_1xb64-240e_cifar100.py']

model = dict(backbone=dict(depth=16))
