# AKD + CWD on the decode head's logits, DeepLabV3 R101-d8 (80.20 mIoU) ->
# DeepLabV3 R18-d8, Cityscapes 512x1024, 80k iterations. The twin config
# without `akd_` is the CWD baseline; this file only swaps the distiller for
# AvatarDistiller.
_base_ = [
    './cwd_logits_deeplabv3-r101-d8_deeplabv3-r18-d8_4xb2-80k_cityscapes-512x1024.py'  # noqa: E501
]

model = dict(
    distiller=dict(
        type='AvatarDistiller',
        avatars=dict(
            num_avatars=1,
            perturbation=dict(type='AvatarDropout', p=0.1),
            # The reference's CWD variant standardised only the student.
            normalize='student',
            uncertainty=dict(tau=4.0))))
