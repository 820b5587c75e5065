# Demo segmentation AKD with Avatars that are views of the input: the
# teacher runs on the image and on its horizontal flip (one forward of
# 2 x 8 images), the flipped view's logits are flipped back onto the
# original frame and the student learns from both, weighted by the
# uncertainty factor, on top of the CWD baseline beside this file (raw
# logits, normalize=False, as the shipped feature Avatars). docs/akd.md,
# "Avatars that run the teacher".
_base_ = ['./cwd_logits_pspnet-r18-w32_pspnet-r18-w8_1xb8-600it_shapes-128.py']
model = dict(
    distiller=dict(
        type='AvatarDistiller',
        avatars=dict(
            perturbation=dict(type='TeacherViews', flip=True, scales=(1.0, )),
            normalize=False,
            uncertainty=dict(tau=4.0))))
