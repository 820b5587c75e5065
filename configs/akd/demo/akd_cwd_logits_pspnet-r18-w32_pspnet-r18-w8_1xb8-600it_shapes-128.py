# Demo AKD: the CWD baseline beside this file plus four dropout Avatars of
# the teacher's logits per iteration, of four strengths (heterogeneous
# Avatars, p = 0.05, 0.1, 0.2, 0.4), weighted by the uncertainty factor
# (w_k ~ u_k^(-1/4): the Avatar that drifts least gets the most weight), with
# no standardisation (normalize=False): CWD's spatial softmaxes see the raw
# logits of both sides, as in the CWD baseline.
# Chosen on the synthetic demo data, selection seeds 1-3
# (docs/results/ablation-uncertainty-demo-seg): heterogeneous Avatars with
# the factor 21.49 +- 0.37 mIoU, without it 20.12 +- 1.02, four p=0.1
# Avatars 20.81 +- 0.64 with the factor and 21.01 +- 0.47 without.
# normalize=False was chosen earlier (docs/results/ablation-demo-seg):
# standardising the logits cost about 6 mIoU even with p=0.
_base_ = ['./cwd_logits_pspnet-r18-w32_pspnet-r18-w8_1xb8-600it_shapes-128.py']
model = dict(
    distiller=dict(
        type='AvatarDistiller',
        avatars=dict(
            num_avatars=4,
            perturbation=dict(type='AvatarDropout', p=(0.05, 0.1, 0.2, 0.4)),
            normalize=False,
            uncertainty=dict(tau=4.0))))
