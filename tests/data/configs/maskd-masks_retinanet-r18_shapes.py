# The zoo's MasKD mask-learning config with its teacher swapped for the
# small RetinaNet R18 of the 6 shape classes (local config); the test gives
# the teacher checkpoint, the data and the schedule length on the command
# line.
_base_ = '../../../configs/akd/mmdet/maskd/maskd-masks_fpn_retinanet-r101_8xb2-2k_coco.py'  # noqa: E501
model = dict(
    teacher=dict(cfg_path='{{fileDirname}}/retinanet_r18_fpn_shapes.py'),
    teacher_ckpt=None)
