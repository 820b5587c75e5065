# AKD + CWD, RepPoints X101-DCN (44.2) -> RepPoints R50, COCO, 2x: the
# reference's akd_cwd_reppoints_x101-reppoints-r50_coco.py. The twin config
# without `akd_` is the same distillation without Avatars; this file only
# swaps the distiller for AvatarDistiller. Avatars perturb the FPN features
# (CWD losses) only; the head-output SmoothL1 losses stay plain, as in the
# reference.
_base_ = ['./cwd_fpn-head_reppoints-x101-dcn_reppoints-r50_8xb2-2x_coco.py']

model = dict(
    distiller=dict(
        type='AvatarDistiller',
        avatars=dict(
            num_avatars=1,
            perturbation=dict(type='AvatarDropout', p=0.1),
            # The reference's CWD variant standardised only the student.
            normalize='student',
            uncertainty=dict(tau=4.0),
            losses=[f'loss_cwd_fpn{i}' for i in range(5)])))
