# CWD on the decode head's logits, PSPNet R101-d8 (79.76 mIoU) -> PSPNet
# R18-d8, Cityscapes 512x1024, 80k iterations: MMRazor's
# cwd_logits_pspnet_r101-d8_pspnet_r18-d8_4xb2-80k_cityscapes-512x1024.py
# (tau 1, loss weight 5). Root config of the segmentation CWD configs; the
# non-AKD twin of
# akd_cwd_logits_pspnet-r101-d8_pspnet-r18-d8_4xb2-80k_cityscapes-512x1024.py.
#
# Data, schedule (SGD lr 0.01, poly, 80k iterations, 4 GPUs x 2 images),
# and runtime are those of the student's stock MMSegmentation config
# (mmseg::_base_ Cityscapes 512x1024, 80k); only `model` is replaced.
_base_ = ['mmseg::pspnet/pspnet_r18-d8_4xb2-80k_cityscapes-512x1024.py']

custom_imports = dict(imports=['mmakd'], allow_failed_imports=False)

# mmseg pspnet/metafile.yaml: pspnet_r101-d8_4xb2-80k_cityscapes-512x1024,
# mIoU 79.76
teacher_ckpt = 'https://download.openmmlab.com/mmsegmentation/v0.5/pspnet/pspnet_r101-d8_512x1024_80k_cityscapes/pspnet_r101-d8_512x1024_80k_cityscapes_20200606_112211-e1e1100f.pth'  # noqa: E501

logits = dict(type='ModuleOutputs', source='decode_head.conv_seg')
model = dict(
    _delete_=True,
    _scope_='mmrazor',
    type='FlexibleTeacherDistill',
    architecture=dict(
        cfg_path=  # noqa: E251
        'mmseg::pspnet/pspnet_r18-d8_4xb2-80k_cityscapes-512x1024.py',
        pretrained=False),
    teacher=dict(
        cfg_path=  # noqa: E251
        'mmseg::pspnet/pspnet_r101-d8_4xb2-80k_cityscapes-512x1024.py',
        pretrained=False),
    teacher_ckpt=teacher_ckpt,
    distiller=dict(
        type='ConfigurableDistiller',
        student_recorders=dict(logits=logits),
        teacher_recorders=dict(logits=logits),
        distill_losses=dict(
            loss_cwd=dict(type='ChannelWiseDivergence', tau=1, loss_weight=5)),
        loss_forward_mappings=dict(
            loss_cwd=dict(
                preds_S=dict(from_student=True, recorder='logits'),
                preds_T=dict(from_student=False, recorder='logits')))))

find_unused_parameters = True

val_cfg = dict(_delete_=True, type='mmrazor.SingleTeacherDistillValLoop')

# 4 GPUs x 2 images; `tools/train.py --auto-scale-lr` rescales the lr for
# another total batch size.
train_dataloader = dict(batch_size=2)
auto_scale_lr = dict(enable=False, base_batch_size=8)
