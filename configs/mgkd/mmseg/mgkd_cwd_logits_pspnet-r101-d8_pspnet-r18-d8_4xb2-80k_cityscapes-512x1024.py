# Dense multi-granularity distillation on top of MMRazor's CWD-on-logits
# baseline (mmrazor::distill/mmseg/cwd/cwd_logits_pspnet_r101-d8_pspnet_r18-
# d8_4xb2-80k_cityscapes-512x1024.py, its non-MGKD twin), PSPNet R101-d8 ->
# R18-d8, Cityscapes 512x1024, 80k iterations. Needs the dense stage 1's
# checkpoint (`analyser_ckpt`). Added to the CWD loss on the logits:
# * granularity-wise distillation per pixel: the student's tubes on its
#   classifier's input (128-d per pixel) give codes that mimic the frozen
#   teacher tubes' codes (512-d input) by KL over the code units at
#   temperature 2 (narrow, 64-d) and 8 (wide, 256-d), averaged over pixels;
# * stable excitation per pixel: the student's class scores are distilled
#   from the mean of the teacher's scores and its two tube decoders' scores.
# The dense weights and temperatures of the MGKD terms are not from the
# paper (it has no dense experiments) and are untuned.
_base_ = [
    'mmseg::_base_/datasets/cityscapes.py',
    'mmseg::_base_/schedules/schedule_80k.py',
    'mmseg::_base_/default_runtime.py'
]

custom_imports = dict(imports=['mmakd'], allow_failed_imports=False)

teacher_ckpt = 'https://download.openmmlab.com/mmsegmentation/v0.5/pspnet/pspnet_r101-d8_512x1024_80k_cityscapes/pspnet_r101-d8_512x1024_80k_cityscapes_20200606_112211-e1e1100f.pth'  # noqa: E501
teacher_cfg_path = 'mmseg::pspnet/pspnet_r101-d8_4xb2-80k_cityscapes-512x1024.py'  # noqa: E501
student_cfg_path = 'mmseg::pspnet/pspnet_r18-d8_4xb2-80k_cityscapes-512x1024.py'  # noqa: E501
# Written by stage 1:
# python tools/train.py configs/mgkd/mmseg/mgkd-analyser_pspnet-r101-d8_4xb2-10k_cityscapes-512x1024.py  # noqa: E501
analyser_ckpt = 'work_dirs/mgkd-analyser_pspnet-r101-d8_4xb2-10k_cityscapes-512x1024/iter_10000.pth'  # noqa: E501

logits = dict(type='ModuleOutputs', source='decode_head.conv_seg')
pixel_feature = dict(type='ModuleInputs', source='decode_head.conv_seg')
s_tubes = dict(from_student=True, recorder='feature', connector='s_tubes')
t_tubes = dict(from_student=False, recorder='feature', connector='t_tubes')

model = dict(
    _scope_='mmrazor',
    type='FlexibleTeacherDistill',
    # The whole teacher in evaluation mode, as in stage 1, where the tubes
    # were trained on eval-mode features: PSPNet's decode and auxiliary
    # heads have Dropout2d(0.1), which MMRazor's train-mode teacher would
    # apply to every record (the reference MGKD code calls t_model.eval()).
    teacher_eval=True,
    architecture=dict(cfg_path=student_cfg_path, pretrained=False),
    teacher=dict(cfg_path=teacher_cfg_path, pretrained=False),
    teacher_ckpt=teacher_ckpt,
    distiller=dict(
        type='ConfigurableDistiller',
        student_recorders=dict(logits=logits, feature=pixel_feature),
        teacher_recorders=dict(logits=logits, feature=pixel_feature),
        connectors=dict(
            # Per pixel: (narrow code, wide code).
            s_tubes=dict(
                type='MGKDAnalyser', in_channels=128, bottlenecks=(64, 256)),
            # Per pixel: (narrow code, wide code, narrow scores, wide
            # scores); loaded from stage 1 and frozen.
            t_tubes=dict(
                type='MGKDAnalyser',
                in_channels=512,
                num_classes=19,
                bottlenecks=(64, 256),
                checkpoint=analyser_ckpt)),
        distill_losses=dict(
            loss_cwd=dict(type='ChannelWiseDivergence', tau=1, loss_weight=5),
            loss_stable=dict(
                type='MGKDStableExcitationLoss', tau=1, loss_weight=1.0),
            loss_narrow=dict(
                type='MGKDGranularityLoss', tau=2, loss_weight=1.0),
            loss_wide=dict(type='MGKDGranularityLoss', tau=8,
                           loss_weight=1.0)),
        loss_forward_mappings=dict(
            loss_cwd=dict(
                preds_S=dict(from_student=True, recorder='logits'),
                preds_T=dict(from_student=False, recorder='logits')),
            loss_stable=dict(
                preds_S=dict(from_student=True, recorder='logits'),
                preds_T=dict(from_student=False, recorder='logits'),
                preds_T_narrow=dict(connector_idx=2, **t_tubes),
                preds_T_wide=dict(connector_idx=3, **t_tubes)),
            loss_narrow=dict(
                preds_S=dict(connector_idx=0, **s_tubes),
                preds_T=dict(connector_idx=0, **t_tubes)),
            loss_wide=dict(
                preds_S=dict(connector_idx=1, **s_tubes),
                preds_T=dict(connector_idx=1, **t_tubes)))))

find_unused_parameters = True

val_cfg = dict(_delete_=True, type='mmrazor.SingleTeacherDistillValLoop')
