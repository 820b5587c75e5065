# A local (not packaged) student config: RetinaNet R18 for the 6 shape
# classes, randomly initialised. score_thr=0 so that CocoMetric has
# detections to score even after a few iterations from random weights.
_base_ = 'mmdet::retinanet/retinanet_r18_fpn_1x_coco.py'
model = dict(
    backbone=dict(init_cfg=None),
    bbox_head=dict(num_classes=6),
    test_cfg=dict(score_thr=0.0, max_per_img=20))
