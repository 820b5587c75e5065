# AKD + MasKD, RetinaNet X101-64x4d 1x (41.0) -> RetinaNet R50 2x, COCO: the
# pair the AKD paper reports (41.5 box AP). Masks from
# maskd-masks_fpn_retinanet-x101_8xb2-2k_coco.py (run it first). The twin
# config without `akd_` is the same distillation without Avatars; this file
# only swaps the distiller for AvatarDistiller, with the Avatars of the R101
# AKD config.
_base_ = ['./maskd_fpn-head_retinanet-x101_retinanet-r50_8xb2-2x_coco.py']

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
