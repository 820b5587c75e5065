# Demo AKD: the CWD baseline beside this file plus four dropout Avatars of
# the teacher's logits per iteration, weighted by their uncertainty; the
# student is standardised per channel as in the reference CWD variant.
_base_ = ['./cwd_logits_pspnet-r18-w32_pspnet-r18-w8_1xb8-600it_shapes-128.py']
model = dict(
    distiller=dict(
        type='AvatarDistiller',
        avatars=dict(
            num_avatars=4,
            perturbation=dict(type='AvatarDropout', p=0.1),
            normalize='student',
            uncertainty=dict(tau=1.0))))
