# SYNTHETIC DATA. Settings for running a CIFAR-100 config on the small
# generated CIFAR-100-format dataset of mmakd/datasets/cifar_like.py, read
# by MMPretrain's CIFAR-100 reader and pipeline (mmrazor.SyntheticCIFAR100).
# Generate it first with
#   python tools/dataset_converters/make_cifar_like.py data/cifar-like \
#       --num-classes 20 --train-per-class 50 --test-per-class 20
# This file only defines variables (prefixed `cifar_like_`); a synthetic
# config inherits a CIFAR-100 config and this file, then assigns them:
#   train_dataloader = {{_base_.cifar_like_train}}   (and so on)
# Anything measured with these configs is a number on synthetic data.
cifar_like_root = 'data/cifar-like'
cifar_like_classes = 20

cifar_like_train = dict(
    batch_size=32,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(type='mmrazor.SyntheticCIFAR100', data_root=cifar_like_root))
cifar_like_test = dict(
    batch_size=100,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(type='mmrazor.SyntheticCIFAR100', data_root=cifar_like_root))
# mmakd.datasets registers SyntheticCIFAR100.
cifar_like_imports = dict(
    imports=['mmakd', 'mmakd.datasets'], allow_failed_imports=False)
cifar_like_hooks = dict(
    logger=dict(interval=10), checkpoint=dict(interval=1, max_keep_ckpts=1))
cifar_like_randomness = dict(seed=0)
