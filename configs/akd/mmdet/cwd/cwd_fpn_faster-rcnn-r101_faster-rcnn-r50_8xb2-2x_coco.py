# CWD on the five FPN levels, Faster R-CNN R101 (39.8) -> R50, COCO, 2x.
# Root config of the detection CWD configs; the non-AKD twin of
# akd_cwd_fpn_faster-rcnn-r101_faster-rcnn-r50_8xb2-2x_coco.py.
#
# Data, schedule, optimizer and runtime are those of the student's stock
# MMDetection config (mmdet::_base_ COCO detection, 2x, SGD lr 0.02 for
# 8 GPUs x 2 images), so the distilled student trains exactly like its
# 38.4 AP baseline; only `model` is replaced.
_base_ = ['mmdet::faster_rcnn/faster-rcnn_r50_fpn_2x_coco.py']

custom_imports = dict(imports=['mmakd'], allow_failed_imports=False)

# mmdet faster_rcnn/metafile.yml: faster-rcnn_r101_fpn_2x_coco, box AP 39.8
teacher_ckpt = 'https://download.openmmlab.com/mmdetection/v2.0/faster_rcnn/faster_rcnn_r101_fpn_2x_coco/faster_rcnn_r101_fpn_2x_coco_bbox_mAP-0.398_20200504_210455-1d2dac9c.pth'  # noqa: E501
num_levels = 5  # FPN outputs P2-P6

model = dict(
    _delete_=True,
    _scope_='mmrazor',
    type='FlexibleTeacherDistill',
    architecture=dict(
        cfg_path='mmdet::faster_rcnn/faster-rcnn_r50_fpn_2x_coco.py',
        pretrained=False),
    teacher=dict(
        cfg_path='mmdet::faster_rcnn/faster-rcnn_r101_fpn_2x_coco.py',
        pretrained=False),
    teacher_ckpt=teacher_ckpt,
    distiller=dict(
        type='ConfigurableDistiller',
        student_recorders=dict(fpn=dict(type='ModuleOutputs', source='neck')),
        teacher_recorders=dict(fpn=dict(type='ModuleOutputs', source='neck')),
        distill_losses={
            f'loss_cwd_fpn{i}':
            dict(type='ChannelWiseDivergence', tau=1, loss_weight=10)
            for i in range(num_levels)
        },
        loss_forward_mappings={
            f'loss_cwd_fpn{i}':
            dict(
                preds_S=dict(from_student=True, recorder='fpn', data_idx=i),
                preds_T=dict(from_student=False, recorder='fpn', data_idx=i))
            for i in range(num_levels)
        }))

find_unused_parameters = True

val_cfg = dict(_delete_=True, type='mmrazor.SingleTeacherDistillValLoop')

# 8 GPUs x 2 images; `tools/train.py --auto-scale-lr` rescales the lr for
# another total batch size.
train_dataloader = dict(batch_size=2)
auto_scale_lr = dict(enable=False, base_batch_size=16)
