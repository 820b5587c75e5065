# AKD + dense multi-granularity distillation in one config: the MGKD config
# (its non-AKD twin) with MMRazor's distiller replaced by mmakd's
# AvatarDistiller. The CWD loss on the logits learns from one Avatar of the
# teacher's logits (element-wise dropout, p = 0.1) with only the student
# standardised (normalize='student', the AKD reference's CWD variant); the
# MGKD losses (granularity-wise codes, stable excitation) are computed
# beside it unchanged (`avatars.losses` selects CWD only: stable excitation
# has three teacher inputs and AKD perturbs a loss's single one).
_base_ = [
    './mgkd_cwd_logits_pspnet-r101-d8_pspnet-r18-d8_4xb2-80k_cityscapes-512x1024.py'  # noqa: E501
]

model = dict(
    distiller=dict(
        type='AvatarDistiller',
        avatars=dict(
            num_avatars=1,
            perturbation=dict(type='AvatarDropout', p=0.1),
            normalize='student',
            uncertainty=dict(tau=4.0),
            losses=['loss_cwd'])))
