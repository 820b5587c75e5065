# Demo segmentation AKD with Monte Carlo dropout Avatars: four samples of
# the teacher with dropout (p = 0.1) on the outputs of its backbone's
# stages (one forward of 4 x 8 images), whose logits the student learns
# from, weighted by the uncertainty factor, on top of the CWD baseline
# beside this file (raw logits, normalize=False). docs/akd.md, "Avatars
# that run the teacher".
_base_ = ['./cwd_logits_pspnet-r18-w32_pspnet-r18-w8_1xb8-600it_shapes-128.py']
model = dict(
    distiller=dict(
        type='AvatarDistiller',
        avatars=dict(
            num_avatars=4,
            perturbation=dict(type='TeacherDropout', p=0.1),
            normalize=False,
            uncertainty=dict(tau=4.0))))
