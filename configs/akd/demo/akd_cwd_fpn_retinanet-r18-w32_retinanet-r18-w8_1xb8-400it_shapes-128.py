# Demo detection AKD, mmakd's recommended setting: the CWD baseline beside
# this file plus four dropout Avatars of every FPN level per iteration, of
# four strengths (p = 0.05, 0.1, 0.2, 0.4), weighted by the uncertainty
# factor (w_k ~ u_k^(-1/4)), with no standardisation (normalize=False): CWD's
# spatial softmaxes see the raw features of both sides, as in the baseline.
# SELECTION PENDING (docs/evidence.md).
_base_ = [
    './cwd_fpn_retinanet-r18-w32_retinanet-r18-w8_1xb8-400it_'
    'shapes-128.py'
]
model = dict(
    distiller=dict(
        type='AvatarDistiller',
        avatars=dict(
            num_avatars=4,
            perturbation=dict(type='AvatarDropout', p=(0.05, 0.1, 0.2, 0.4)),
            normalize=False,
            uncertainty=dict(tau=4.0))))
