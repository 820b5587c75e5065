# MasKD stage 1 on the RetinaNet X101-64x4d 1x teacher (41.0 box AP) that
# the AKD paper reports for AKD + MasKD: no masks for this checkpoint are
# published, so these make them. Everything else as the R101 root config.
# The X101 distillation configs load this config's last checkpoint,
# work_dirs/maskd-masks_fpn_retinanet-x101_8xb2-2k_coco/iter_2000.pth.
_base_ = ['./maskd-masks_fpn_retinanet-r101_8xb2-2k_coco.py']

# mmdet retinanet/metafile.yml: retinanet_x101-64x4d_fpn_1x_coco, box AP 41.0
teacher_ckpt = 'https://download.openmmlab.com/mmdetection/v2.0/retinanet/retinanet_x101_64x4d_fpn_1x_coco/retinanet_x101_64x4d_fpn_1x_coco_20200130-366f5af1.pth'  # noqa: E501

model = dict(
    teacher=dict(
        cfg_path='mmdet::retinanet/retinanet_x101-64x4d_fpn_1x_coco.py'),
    teacher_ckpt=teacher_ckpt)
