# Demo detection student: the same RetinaNet with a ResNet-18 at width 8
# (FPN and head as wide as the teacher's, so that CWD compares FPN levels
# channel by channel without a connector), trained alone.
_base_ = ['./_base_/retinanet-r18-fpn.py', './_base_/shapes-det-128.py']
model = dict(
    backbone=dict(stem_channels=8, base_channels=8),
    neck=dict(in_channels=[16, 32, 64]))
