# MasKD from RetinaNet X101-64x4d 1x (41.0), the teacher the AKD paper
# reports for AKD + MasKD, to RetinaNet R50 2x, COCO: the R101 root config
# with another teacher and its masks. No masks for this teacher are
# published: make them first with
# maskd-masks_fpn_retinanet-x101_8xb2-2k_coco.py (MasKD's first stage), whose
# last checkpoint this config loads. The non-AKD twin of
# akd_maskd_fpn-head_retinanet-x101_retinanet-r50_8xb2-2x_coco.py.
_base_ = ['./maskd_fpn-head_retinanet-r101_retinanet-r50_8xb2-2x_coco.py']

# mmdet retinanet/metafile.yml: retinanet_x101-64x4d_fpn_1x_coco, box AP 41.0
teacher_ckpt = 'https://download.openmmlab.com/mmdetection/v2.0/retinanet/retinanet_x101_64x4d_fpn_1x_coco/retinanet_x101_64x4d_fpn_1x_coco_20200130-366f5af1.pth'  # noqa: E501
mask_ckpt = 'work_dirs/maskd-masks_fpn_retinanet-x101_8xb2-2k_coco/iter_2000.pth'  # noqa: E501

model = dict(
    teacher=dict(
        cfg_path='mmdet::retinanet/retinanet_x101-64x4d_fpn_1x_coco.py'),
    teacher_ckpt=teacher_ckpt,
    distiller=dict(distill_losses={
        f'loss_maskd_fpn{i}': dict(pretrained=mask_ckpt)
        for i in range(5)
    }))
