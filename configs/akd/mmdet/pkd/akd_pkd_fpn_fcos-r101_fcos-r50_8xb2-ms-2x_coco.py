# AKD + PKD on FPN levels P3-P6, FCOS R101 (40.8) -> FCOS R50, COCO,
# multi-scale 2x. The twin config without `akd_` is the PKD baseline; this
# file only swaps the distiller for AvatarDistiller.
_base_ = ['./pkd_fpn_fcos-r101_fcos-r50_8xb2-ms-2x_coco.py']

model = dict(
    distiller=dict(
        type='AvatarDistiller',
        avatars=dict(
            num_avatars=1,
            perturbation=dict(type='AvatarDropout', p=0.1),
            # Both sides standardised, as the reference's MGD and MasKD
            # variants (PKD standardises per channel itself, too).
            normalize=True,
            uncertainty=dict(tau=4.0))))
