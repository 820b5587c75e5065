# Demo detection baseline: CWD on the FPN levels (MMRazor's RetinaNet recipe:
# tau=1, loss_weight=10 per level) from the width-32 teacher to the width-8
# student, on the synthetic shapes dataset in COCO format. The teacher
# checkpoint comes from training
# retinanet_r18-w32_fpn-64_1xb8-2000it_shapes-128.py (tools/demo.py --task
# det passes its path).
_base_ = ['./_base_/shapes-det-128.py']

teacher_ckpt = 'work_dirs/akd_demo/det/teacher/iter_2000.pth'
num_levels = 3  # P3-P5, _base_/retinanet-r18-fpn.py
model = dict(
    _scope_='mmrazor',
    type='FlexibleTeacherDistill',
    architecture=dict(
        cfg_path='{{fileDirname}}/retinanet_r18-w8_fpn-64_1xb8-400it_'
        'shapes-128.py'),
    teacher=dict(
        cfg_path='{{fileDirname}}/retinanet_r18-w32_fpn-64_1xb8-2000it_'
        'shapes-128.py'),
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
