# Demo detection AKD in the reference code's setting (Gumpest/AvatarKD,
# configs/distill/mmdet/cwd): one dropout Avatar (p = 0.1) of every FPN
# level per iteration on top of the CWD baseline beside this file, with the
# reference's CWD normalisation (only the student's features standardised).
_base_ = [
    './cwd_fpn_retinanet-r18-w32_retinanet-r18-w8_1xb8-400it_'
    'shapes-128.py'
]
model = dict(
    distiller=dict(
        type='AvatarDistiller',
        avatars=dict(
            num_avatars=1,
            perturbation=dict(type='AvatarDropout', p=0.1),
            normalize='student',
            uncertainty=dict(tau=4.0))))
