# Demo detection AKD with Avatars that are views of the input: the teacher
# runs on the image and on its horizontal flip (one forward of 2 x 8
# images), each view's FPN levels are flipped back onto the original frame
# and the student learns from both, weighted by the uncertainty factor, on
# top of the CWD baseline beside this file (raw features, normalize=False,
# as mmakd's recommended feature Avatars). docs/akd.md, "Avatars that run
# the teacher".
_base_ = [
    './cwd_fpn_retinanet-r18-w32_retinanet-r18-w8_1xb8-400it_shapes-128.py'
]
model = dict(
    distiller=dict(
        type='AvatarDistiller',
        avatars=dict(
            perturbation=dict(type='TeacherViews', flip=True, scales=(1.0, )),
            normalize=False,
            uncertainty=dict(tau=4.0))))
