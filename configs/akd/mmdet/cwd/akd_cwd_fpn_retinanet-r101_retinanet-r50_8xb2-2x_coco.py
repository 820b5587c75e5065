# AKD + CWD on the five FPN levels, RetinaNet R101 (38.9) -> R50, COCO, 2x.
# The twin config without `akd_` is the CWD baseline; this file only swaps
# the distiller for AvatarDistiller.
_base_ = ['./cwd_fpn_retinanet-r101_retinanet-r50_8xb2-2x_coco.py']

model = dict(
    distiller=dict(
        type='AvatarDistiller',
        avatars=dict(
            num_avatars=1,
            perturbation=dict(type='AvatarDropout', p=0.1),
            # The reference's CWD variant standardised only the student.
            normalize='student',
            uncertainty=dict(tau=4.0))))
