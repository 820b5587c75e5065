# Demo AKD: the CWD baseline beside this file plus four dropout Avatars of
# the teacher's logits per iteration, weighted by their uncertainty.
# Student and Avatars are both standardised per channel (AvatarDistiller's
# default). On logits this keeps CWD's spatial softmaxes on one scale; with
# normalize='student' (the reference's CWD variant, made for FPN features)
# the student's unit-variance logits face the teacher's raw, wider ones and
# the CWD loss cannot fall: in our first full demo run it stayed near 7
# against 4.4 for plain CWD, and the student reached 17.40 mIoU against
# 21.45 (one seed, synthetic data; see README).
_base_ = ['./cwd_logits_pspnet-r18-w32_pspnet-r18-w8_1xb8-600it_shapes-128.py']
model = dict(
    distiller=dict(
        type='AvatarDistiller',
        avatars=dict(
            num_avatars=4,
            perturbation=dict(type='AvatarDropout', p=0.1),
            normalize=True,
            uncertainty=dict(tau=1.0))))
