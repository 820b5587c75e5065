# Demo teacher: PSPNet ResNetV1c-18 at width 32 (3.2M parameters), trained
# from scratch on the synthetic shapes dataset.
_base_ = ['./_base_/pspnet-r18.py', './_base_/shapes-seg-128.py']
max_iters = 1600
param_scheduler = [
    dict(
        type='PolyLR',
        eta_min=1e-4,
        power=0.9,
        begin=0,
        end=max_iters,
        by_epoch=False)
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(interval=max_iters))
