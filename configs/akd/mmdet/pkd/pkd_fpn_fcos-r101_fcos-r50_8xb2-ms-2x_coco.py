# PKD on FPN levels P3-P6, FCOS R101 (40.8) -> FCOS R50, COCO, multi-scale
# 2x. Root config of the detection PKD configs; the non-AKD twin of
# akd_pkd_fpn_fcos-r101_fcos-r50_8xb2-ms-2x_coco.py.
#
# Both models are MMDetection's caffe-style FCOS with GN head, trained with
# multi-scale (640-800) 2x; data, schedule, optimizer (lr 0.01, bias lr x2,
# gradient clipping) and runtime are those of the student's stock config,
# so the distilled student trains exactly like its 38.5 AP baseline; only
# `model` is replaced. PKD on four levels with loss weight 10, as
# MMRazor's one-stage PKD configs.
_base_ = ['mmdet::fcos/fcos_r50-caffe_fpn_gn-head_ms-640-800-2x_coco.py']

custom_imports = dict(imports=['mmakd'], allow_failed_imports=False)

# mmdet fcos/metafile.yml: fcos_r101-caffe_fpn_gn-head_ms-640-800-2x_coco,
# box AP 40.8
teacher_ckpt = 'https://download.openmmlab.com/mmdetection/v2.0/fcos/fcos_r101_caffe_fpn_gn-head_mstrain_640-800_2x_coco/fcos_r101_caffe_fpn_gn-head_mstrain_640-800_2x_coco-511424d6.pth'  # noqa: E501
num_levels = 4  # FPN outputs P3-P6 of P3-P7, as MMRazor's PKD configs

model = dict(
    _delete_=True,
    _scope_='mmrazor',
    type='FlexibleTeacherDistill',
    architecture=dict(
        cfg_path=  # noqa: E251
        'mmdet::fcos/fcos_r50-caffe_fpn_gn-head_ms-640-800-2x_coco.py',
        pretrained=False),
    teacher=dict(
        cfg_path=  # noqa: E251
        'mmdet::fcos/fcos_r101-caffe_fpn_gn-head_ms-640-800-2x_coco.py',
        pretrained=False),
    teacher_ckpt=teacher_ckpt,
    distiller=dict(
        type='ConfigurableDistiller',
        student_recorders=dict(fpn=dict(type='ModuleOutputs', source='neck')),
        teacher_recorders=dict(fpn=dict(type='ModuleOutputs', source='neck')),
        distill_losses={
            f'loss_pkd_fpn{i}': dict(type='PKDLoss', loss_weight=10)
            for i in range(num_levels)
        },
        loss_forward_mappings={
            f'loss_pkd_fpn{i}':
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
