# Demo baseline: CWD on the logits (MMRazor's PSPNet setting: tau=1,
# loss_weight=5) from the width-32 teacher to the width-8 student, on the
# synthetic shapes dataset. The teacher checkpoint comes from training
# pspnet_r18-w32_1xb8-1600it_shapes-128.py (tools/demo.py passes its path).
_base_ = ['./_base_/shapes-seg-128.py']
custom_imports = dict(imports=['mmakd'], allow_failed_imports=False)

teacher_ckpt = 'work_dirs/akd_demo/seg/teacher/iter_1600.pth'
model = dict(
    _scope_='mmrazor',
    type='FlexibleTeacherDistill',
    architecture=dict(
        cfg_path='{{fileDirname}}/pspnet_r18-w8_1xb8-600it_shapes-128.py'),
    teacher=dict(
        cfg_path='{{fileDirname}}/pspnet_r18-w32_1xb8-1600it_shapes-128.py'),
    teacher_ckpt=teacher_ckpt,
    distiller=dict(
        type='ConfigurableDistiller',
        student_recorders=dict(
            logits=dict(type='ModuleOutputs', source='decode_head.conv_seg')),
        teacher_recorders=dict(
            logits=dict(type='ModuleOutputs', source='decode_head.conv_seg')),
        distill_losses=dict(
            loss_cwd=dict(type='ChannelWiseDivergence', tau=1, loss_weight=5)),
        loss_forward_mappings=dict(
            loss_cwd=dict(
                preds_S=dict(from_student=True, recorder='logits'),
                preds_T=dict(from_student=False, recorder='logits')))))

find_unused_parameters = True
val_cfg = dict(_delete_=True, type='mmrazor.SingleTeacherDistillValLoop')
