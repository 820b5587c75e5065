# CWD on the five FPN levels, RetinaNet R101 (38.9) -> R50, COCO, 2x.
# Non-AKD twin of akd_cwd_fpn_retinanet-r101_retinanet-r50_8xb2-2x_coco.py.
_base_ = ['./cwd_fpn_faster-rcnn-r101_faster-rcnn-r50_8xb2-2x_coco.py']

# mmdet retinanet/metafile.yml: retinanet_r101_fpn_2x_coco, box AP 38.9
teacher_ckpt = 'https://download.openmmlab.com/mmdetection/v2.0/retinanet/retinanet_r101_fpn_2x_coco/retinanet_r101_fpn_2x_coco_20200131-5560aee8.pth'  # noqa: E501

model = dict(
    architecture=dict(
        cfg_path='mmdet::retinanet/retinanet_r50_fpn_2x_coco.py'),
    teacher=dict(cfg_path='mmdet::retinanet/retinanet_r101_fpn_2x_coco.py'),
    teacher_ckpt=teacher_ckpt)

# The RetinaNet student's stock learning rate (retinanet_r50_fpn_2x_coco).
optim_wrapper = dict(optimizer=dict(lr=0.01))
