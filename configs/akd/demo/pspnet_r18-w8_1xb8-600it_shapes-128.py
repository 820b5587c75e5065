# Demo student: the same PSPNet at width 8 (0.24M parameters), trained alone.
_base_ = ['./_base_/pspnet-r18.py', './_base_/shapes-seg-128.py']
model = dict(
    backbone=dict(stem_channels=8, base_channels=8),
    decode_head=dict(in_channels=64, channels=32))
