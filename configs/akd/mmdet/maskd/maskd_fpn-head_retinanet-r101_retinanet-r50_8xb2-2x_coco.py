# MasKD on the five FPN levels plus box-regression distillation on the head,
# RetinaNet R101 2x (38.9) -> RetinaNet R50 2x, COCO: the reference's
# akd_maskd_retinanet_x101-retinanet_r50_coco.py without Avatars, which
# (despite its file name) distils from RetinaNet R101 with masks learned on
# that teacher. Root config of the detection MasKD configs; the non-AKD twin
# of akd_maskd_fpn-head_retinanet-r101_retinanet-r50_8xb2-2x_coco.py.
#
# Per FPN level, mmakd's MasKDLoss with the reference's pretrained masks
# (6 receptive tokens and mask weights, learned on this teacher by MasKD's
# first stage; maskd-masks_fpn_retinanet-r101_8xb2-2k_coco.py makes them
# anew), student-refined masks after 7000 iterations, loss weight 7. Every
# loss parameter is frozen, as the reference: the tokens do not require
# gradients (freeze_masks) and the optimizer gives the losses lr_mult=0.
# Data and runtime are the student's stock 2x config; optimizer as the
# reference: lr 0.02, gradient clipping (max norm 35), 1000 warm-up
# iterations.
_base_ = ['mmdet::retinanet/retinanet_r50_fpn_2x_coco.py']

custom_imports = dict(imports=['mmakd'], allow_failed_imports=False)

# mmdet retinanet/metafile.yml: retinanet_r101_fpn_2x_coco, box AP 38.9
teacher_ckpt = 'https://download.openmmlab.com/mmdetection/v2.0/retinanet/retinanet_r101_fpn_2x_coco/retinanet_r101_fpn_2x_coco_20200131-5560aee8.pth'  # noqa: E501
# The reference's masks for this teacher, keys mask_modules.<level>.*
mask_ckpt = 'https://github.com/Gumpest/MasKD/releases/download/v0.0.3/maskd_retinanet_r101_fpn_2x_coco_20200131-5560aee8.ckpt'  # noqa: E501
num_levels = 5  # FPN outputs P3-P7; the head runs once per level

model = dict(
    _delete_=True,
    _scope_='mmrazor',
    type='FlexibleTeacherDistill',
    architecture=dict(
        cfg_path='mmdet::retinanet/retinanet_r50_fpn_2x_coco.py',
        pretrained=False),
    teacher=dict(
        cfg_path='mmdet::retinanet/retinanet_r101_fpn_2x_coco.py',
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
                    pretrained=mask_ckpt,
                    pretrained_prefix=f'mask_modules.{i}.',
                    freeze_masks=True,
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
    optimizer=dict(lr=0.02),
    clip_grad=dict(max_norm=35, norm_type=2),
    # The reference's opt_paramwise_cfg: no loss parameter learns.
    paramwise_cfg=dict(
        custom_keys={
            'distiller.distill_losses': dict(lr_mult=0, decay_mult=0)
        }))
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
