# Demo detection, real teacher ensemble: the CWD baseline
# (cwd_fpn_retinanet-r18-w32_...) from the mean of four width-32 RetinaNet
# teachers, trained from seeds 0-3 (MultiTeacherDistill averages their FPN
# outputs; CWD compares the student with the mean). The ceiling that the
# Avatars of one teacher (akd_cwd_fpn_...) are measured against in
# docs/ensemble.md; `python tools/demo.py --task ensemble` trains the
# teachers and passes their checkpoints.
_base_ = [
    './cwd_fpn_retinanet-r18-w32_retinanet-r18-w8_1xb8-400it_'
    'shapes-128.py'
]

teacher_seeds = [0, 1, 2, 3]
model = dict(
    type='MultiTeacherDistill',
    # the single-teacher keys of the base are replaced by the lists below
    teacher=None,
    teacher_ckpt=None,
    teachers=[
        dict(cfg_path='{{fileDirname}}/retinanet_r18-w32_fpn-64_1xb8-2000it_'
             'shapes-128.py') for _ in teacher_seeds
    ],
    teacher_ckpts=[
        f'work_dirs/akd_demo/ensemble/teacher_seed{seed}/iter_2000.pth'
        for seed in teacher_seeds
    ])

# validate the student and every teacher: logs teacher0.coco/bbox_mAP ...
# teacher3.coco/bbox_mAP (MMRazor's SingleTeacherDistillValLoop would log
# teacher 0 alone as teacher.coco/bbox_mAP)
val_cfg = dict(_delete_=True, type='mmrazor.MultiTeacherDistillValLoop')
