# MGD on the five FPN levels, Cascade Mask R-CNN X101-64x4d (45.6) ->
# Faster R-CNN R50, COCO, 2x. Root config of the detection MGD configs; the
# non-AKD twin of
# akd_mgd_fpn_cascade-mask-rcnn-x101_faster-rcnn-r50_8xb2-2x_coco.py.
#
# MMRazor's MGDLoss + MGDConnector (alpha 2e-5, mask ratio 0.65, as
# mmrazor::distill/mmdet/mgd/mgd_fpn_retina_x101_retina_r50_2x_coco.py and
# the reference's akd_mgd_cascade_mask_rcnn_x101-fpn_x50_coco.py). Data,
# schedule, optimizer and runtime are the student's stock 2x config, plus
# the reference's gradient clipping (max norm 35). As in the reference, the
# student's neck and RPN head start from the teacher's (same shapes).
_base_ = ['mmdet::faster_rcnn/faster-rcnn_r50_fpn_2x_coco.py']

custom_imports = dict(imports=['mmakd'], allow_failed_imports=False)

# mmdet cascade_rcnn/metafile.yml: cascade-mask-rcnn_x101-64x4d_fpn_20e_coco,
# box AP 45.6
teacher_ckpt = 'https://download.openmmlab.com/mmdetection/v2.0/cascade_rcnn/cascade_mask_rcnn_x101_64x4d_fpn_20e_coco/cascade_mask_rcnn_x101_64x4d_fpn_20e_coco_20200512_161033-bdb5126a.pth'  # noqa: E501
num_levels = 5  # FPN outputs P2-P6

model = dict(
    _delete_=True,
    _scope_='mmrazor',
    type='FlexibleTeacherDistill',
    architecture=dict(
        cfg_path='mmdet::faster_rcnn/faster-rcnn_r50_fpn_2x_coco.py',
        pretrained=False,
        cfg_options={
            'model.neck.init_cfg':
            dict(type='Pretrained', prefix='neck.', checkpoint=teacher_ckpt),
            'model.rpn_head.init_cfg':
            dict(
                type='Pretrained', prefix='rpn_head.', checkpoint=teacher_ckpt)
        }),
    # The teacher runs backbone and neck only (teacher_forward 'auto' picks
    # 'feat': every recorder is on the neck). Its mask branch is left out so
    # that it also runs on detection data (no masks) with
    # teacher_forward='loss'; its checkpoint's mask weights are then
    # unexpected keys, hence the non-strict load.
    teacher=dict(
        cfg_path=  # noqa: E251
        'mmdet::cascade_rcnn/cascade-mask-rcnn_x101-64x4d_fpn_20e_coco.py',
        pretrained=False,
        cfg_options={
            'model.roi_head.mask_roi_extractor': None,
            'model.roi_head.mask_head': None
        }),
    teacher_ckpt=teacher_ckpt,
    teacher_ckpt_strict=False,
    distiller=dict(
        type='ConfigurableDistiller',
        student_recorders=dict(fpn=dict(type='ModuleOutputs', source='neck')),
        teacher_recorders=dict(fpn=dict(type='ModuleOutputs', source='neck')),
        connectors={
            f's_fpn{i}_connector':
            dict(
                type='MGDConnector',
                student_channels=256,
                teacher_channels=256,
                lambda_mgd=0.65)
            for i in range(num_levels)
        },
        distill_losses={
            f'loss_mgd_fpn{i}': dict(type='MGDLoss', alpha_mgd=0.00002)
            for i in range(num_levels)
        },
        loss_forward_mappings={
            f'loss_mgd_fpn{i}':
            dict(
                preds_S=dict(
                    from_student=True,
                    recorder='fpn',
                    data_idx=i,
                    connector=f's_fpn{i}_connector'),
                preds_T=dict(from_student=False, recorder='fpn', data_idx=i))
            for i in range(num_levels)
        }))

find_unused_parameters = True

val_cfg = dict(_delete_=True, type='mmrazor.SingleTeacherDistillValLoop')

optim_wrapper = dict(clip_grad=dict(max_norm=35, norm_type=2))

# 8 GPUs x 2 images; `tools/train.py --auto-scale-lr` rescales the lr for
# another total batch size.
train_dataloader = dict(batch_size=2)
auto_scale_lr = dict(enable=False, base_batch_size=16)
