# AKD + MGD on the five FPN levels, Cascade Mask R-CNN X101-64x4d (45.6) ->
# Faster R-CNN R50, COCO, 2x. The twin config without `akd_` is the MGD
# baseline; this file only swaps the distiller for AvatarDistiller.
_base_ = ['./mgd_fpn_cascade-mask-rcnn-x101_faster-rcnn-r50_8xb2-2x_coco.py']

model = dict(
    distiller=dict(
        type='AvatarDistiller',
        avatars=dict(
            num_avatars=1,
            perturbation=dict(type='AvatarDropout', p=0.1),
            # The reference's MGD variant: the student standardised *before*
            # MGD's mask and generation block (its MGDConnector here), the
            # Avatar standardised: gen(mask(norm(S))) against norm(A).
            normalize=True,
            normalize_at='record',
            uncertainty=dict(tau=4.0))))
