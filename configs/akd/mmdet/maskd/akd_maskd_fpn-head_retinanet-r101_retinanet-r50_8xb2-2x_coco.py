# AKD + MasKD, RetinaNet R101 2x (38.9) -> RetinaNet R50, COCO, 2x: the
# reference's akd_maskd_retinanet_x101-retinanet_r50_coco.py as it runs
# (its teacher and masks are RetinaNet R101's). The twin config without
# `akd_` is the same distillation without Avatars; this file only swaps the
# distiller for AvatarDistiller. Avatars perturb the FPN features (MasKD
# losses) only; the head-output L1 losses stay plain, as in the reference.
_base_ = ['./maskd_fpn-head_retinanet-r101_retinanet-r50_8xb2-2x_coco.py']

model = dict(
    distiller=dict(
        type='AvatarDistiller',
        avatars=dict(
            num_avatars=1,
            perturbation=dict(type='AvatarDropout', p=0.1),
            # Both sides standardised, as the reference's MasKD variant.
            normalize=True,
            uncertainty=dict(tau=4.0),
            losses=[f'loss_maskd_fpn{i}' for i in range(5)])))
