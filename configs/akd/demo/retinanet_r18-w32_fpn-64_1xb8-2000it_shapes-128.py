# Demo detection teacher: RetinaNet, ResNet-18 at width 32, FPN 64, trained
# from scratch on the synthetic shapes dataset (COCO format).
_base_ = ['./_base_/retinanet-r18-fpn.py', './_base_/shapes-det-128.py']
max_iters = 2000
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=50),
    dict(
        type='CosineAnnealingLR',
        eta_min=1e-5,
        begin=0,
        end=max_iters,
        T_max=max_iters,
        by_epoch=False)
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(interval=max_iters))
