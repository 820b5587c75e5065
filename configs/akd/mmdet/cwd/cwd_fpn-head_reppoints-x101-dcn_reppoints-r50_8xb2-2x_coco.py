# CWD on the five FPN levels plus point-regression distillation on the
# head, RepPoints X101-DCN (44.2) -> RepPoints R50, COCO, 2x: the setting of
# the reference's akd_cwd_reppoints_x101-reppoints-r50_coco.py without
# Avatars. Non-AKD twin of
# akd_cwd_fpn-head_reppoints-x101-dcn_reppoints-r50_8xb2-2x_coco.py.
#
# The paper calls this teacher "RepPoints R101 (44.2)"; 44.2 AP is the
# model zoo's RepPoints moment ResNeXt-101 with DCN (c3-c5), the teacher the
# reference config builds. As in the reference, the student's neck and head
# start from the teacher's (same shapes).
_base_ = ['./cwd_fpn_faster-rcnn-r101_faster-rcnn-r50_8xb2-2x_coco.py']

# mmdet reppoints/metafile.yml:
# reppoints-moment_x101-dconv-c3-c5_fpn-gn_head-gn_2x_coco, box AP 44.2
teacher_ckpt = 'https://download.openmmlab.com/mmdetection/v2.0/reppoints/reppoints_moment_x101_fpn_dconv_c3-c5_gn-neck%2Bhead_2x_coco/reppoints_moment_x101_fpn_dconv_c3-c5_gn-neck%2Bhead_2x_coco_20200329-f87da1ea.pth'  # noqa: E501
num_levels = 5  # FPN outputs P3-P7; the head runs once per level
# Head outputs distilled with SmoothL1 (beta 0.11): recorder -> loss weight
# (the reference's loss_kd_reg_init_head / loss_kd_reg_refine_head).
head_kd = dict(pts_init=0.1, pts_refine=0.2)
head_recorders = dict(
    pts_init=dict(
        type='ModuleOutputs', source='bbox_head.reppoints_pts_init_out'),
    pts_refine=dict(
        type='ModuleOutputs', source='bbox_head.reppoints_pts_refine_out'))

model = dict(
    architecture=dict(
        cfg_path=  # noqa: E251
        'mmdet::reppoints/reppoints-moment_r50_fpn-gn_head-gn_2x_coco.py',
        cfg_options={
            'model.neck.init_cfg':
            dict(type='Pretrained', prefix='neck.', checkpoint=teacher_ckpt),
            'model.bbox_head.init_cfg':
            dict(
                type='Pretrained',
                prefix='bbox_head.',
                checkpoint=teacher_ckpt)
        }),
    teacher=dict(
        cfg_path=  # noqa: E251
        'mmdet::reppoints/reppoints-moment_x101-dconv-c3-c5_fpn-gn_head-gn_2x_coco.py'  # noqa: E501
    ),
    teacher_ckpt=teacher_ckpt,
    distiller=dict(
        student_recorders=head_recorders,
        teacher_recorders=head_recorders,
        distill_losses={
            **{
                f'loss_cwd_fpn{i}': dict(loss_weight=7.5)
                for i in range(num_levels)
            },
            **{
                f'loss_kd_{out}{i}':
                dict(type='mmdet.SmoothL1Loss', beta=0.11, loss_weight=weight)
                for out, weight in head_kd.items()
                for i in range(num_levels)
            }
        },
        loss_forward_mappings={
            f'loss_kd_{out}{i}':
            dict(
                pred=dict(from_student=True, recorder=out, record_idx=i),
                target=dict(from_student=False, recorder=out, record_idx=i))
            for out in head_kd
            for i in range(num_levels)
        }))

# The RepPoints student's stock learning rate (reppoints-moment_r50_*).
optim_wrapper = dict(optimizer=dict(lr=0.01))
