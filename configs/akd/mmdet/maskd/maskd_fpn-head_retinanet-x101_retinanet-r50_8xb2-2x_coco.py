# MasKD on the five FPN levels plus box-regression distillation on the head,
# RetinaNet X101-64x4d (41.0) -> RetinaNet R50, COCO, 2x: the setting of the
# reference's akd_maskd_retinanet_x101-retinanet_r50_coco.py without
# Avatars. Root config of the detection MasKD configs; the non-AKD twin of
# akd_maskd_fpn-head_retinanet-x101_retinanet-r50_8xb2-2x_coco.py.
#
# Per FPN level, mmakd's MasKDLoss with 6 receptive tokens, mask weighting
# and student-refined masks after 7000 iterations, loss weight 7 (the
# reference's values). The reference loaded pretrained masks learned on a
# RetinaNet R101 teacher (maskd_retinanet_r101_fpn_2x_coco_*.ckpt), not on
# this X101 teacher; no mask checkpoint for it is published, so the tokens
# start random and train with the distillation (MasKDLoss adds its Dice
# diversity term for trainable tokens). Data and runtime are the student's
# stock 2x config; optimizer as the reference: lr 0.02, gradient clipping
# (max norm 35), 1000 warm-up iterations.
_base_ = ['mmdet::retinanet/retinanet_r50_fpn_2x_coco.py']

custom_imports = dict(imports=['mmakd'], allow_failed_imports=False)

# mmdet retinanet/metafile.yml: retinanet_x101-64x4d_fpn_1x_coco, box AP 41.0
teacher_ckpt = 'https://download.openmmlab.com/mmdetection/v2.0/retinanet/retinanet_x101_64x4d_fpn_1x_coco/retinanet_x101_64x4d_fpn_1x_coco_20200130-366f5af1.pth'  # noqa: E501
num_levels = 5  # FPN outputs P3-P7; the head runs once per level

model = dict(
    _delete_=True,
    _scope_='mmrazor',
    type='FlexibleTeacherDistill',
    architecture=dict(
        cfg_path='mmdet::retinanet/retinanet_r50_fpn_2x_coco.py',
        pretrained=False),
    teacher=dict(
        cfg_path='mmdet::retinanet/retinanet_x101-64x4d_fpn_1x_coco.py',
        pretrained=False),
    teacher_ckpt=teacher_ckpt,
    distiller=dict(
        type='ConfigurableDistiller',
        student_recorders=dict(
            fpn=dict(type='ModuleOutputs', source='neck'),
            reg=dict(type='ModuleOutputs', source='bbox_head.retina_reg')),
        teacher_recorders=dict(
            fpn=dict(type='ModuleOutputs', source='neck'),
            reg=dict(type='ModuleOutputs', source='bbox_head.retina_reg')),
        distill_losses={
            **{
                f'loss_maskd_fpn{i}':
                dict(
                    type='MasKDLoss',
                    channels=256,
                    num_tokens=6,
                    weight_mask=True,
                    custom_mask=True,
                    custom_mask_warmup=7000,
                    pretrained=None,
                    loss_weight=7)
                for i in range(num_levels)
            },
            # The reference's loss_kd_reg_head (L1, weight 1).
            **{
                f'loss_kd_reg{i}': dict(type='L1Loss', loss_weight=1)
                for i in range(num_levels)
            }
        },
        loss_forward_mappings={
            **{
                f'loss_maskd_fpn{i}':
                dict(
                    preds_S=dict(
                        from_student=True, recorder='fpn', data_idx=i),
                    preds_T=dict(
                        from_student=False, recorder='fpn', data_idx=i))
                for i in range(num_levels)
            },
            **{
                f'loss_kd_reg{i}':
                dict(
                    s_feature=dict(
                        from_student=True, recorder='reg', record_idx=i),
                    t_feature=dict(
                        from_student=False, recorder='reg', record_idx=i))
                for i in range(num_levels)
            }
        }))

find_unused_parameters = True

val_cfg = dict(_delete_=True, type='mmrazor.SingleTeacherDistillValLoop')

optim_wrapper = dict(
    optimizer=dict(lr=0.02), clip_grad=dict(max_norm=35, norm_type=2))
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
        end=1000),
    dict(
        type='MultiStepLR',
        begin=0,
        end=24,
        by_epoch=True,
        milestones=[16, 22],
        gamma=0.1)
]

# 8 GPUs x 2 images; `tools/train.py --auto-scale-lr` rescales the lr for
# another total batch size.
train_dataloader = dict(batch_size=2)
auto_scale_lr = dict(enable=False, base_batch_size=16)
