# CIFAR-100 as the multi-granularity reference code trains on it: batch 64,
# random crop 32 with padding 4, horizontal flip, per-channel normalisation
# (MMPretrain's CIFAR-100 constants, those of the reference up to rounding).
_base_ = ['mmpretrain::_base_/datasets/cifar100_bs16.py']

train_dataloader = dict(batch_size=64, num_workers=4)
val_dataloader = dict(batch_size=64, num_workers=4)
test_dataloader = dict(batch_size=64, num_workers=4)
