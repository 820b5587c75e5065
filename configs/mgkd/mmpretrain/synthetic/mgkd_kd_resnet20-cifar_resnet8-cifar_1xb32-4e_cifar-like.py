# SYNTHETIC DATA: KD + multi-granularity distillation (the CIFAR-100
# mgkd_kd config) from the synthetic ResNet-20 teacher, with the tubes of
# the synthetic stage 1, to a ResNet-8; the KD twin's schedule.
_base_ = [
    '../mgkd_kd_resnet56-cifar_resnet20-cifar_1xb64-240e_cifar100.py',
    './_base_/cifar-like.py'
]

train_dataloader = {{_base_.cifar_like_train}}
val_dataloader = {{_base_.cifar_like_test}}
test_dataloader = {{_base_.cifar_like_test}}
custom_imports = {{_base_.cifar_like_imports}}
default_hooks = {{_base_.cifar_like_hooks}}
randomness = {{_base_.cifar_like_randomness}}

teacher_cfg = '{{fileDirname}}/resnet20-cifar_1xb32-4e_cifar-like.py'
student_cfg = '{{fileDirname}}/resnet8-cifar_1xb32-4e_cifar-like.py'
teacher_ckpt = 'work_dirs/resnet20-cifar_1xb32-4e_cifar-like/epoch_4.pth'
analyser_ckpt = 'work_dirs/mgkd-analyser_resnet20-cifar_1xb32-3e_cifar-like/epoch_3.pth'  # noqa: E501

model = dict(
    # Teacher and its frozen tubes in evaluation mode, as in stage 1 (the
    # reference MGKD code calls t_model.eval()).
    teacher_eval=True,
    architecture=dict(cfg_path=student_cfg),
    teacher=dict(cfg_path=teacher_cfg),
    teacher_ckpt=teacher_ckpt,
    distiller=dict(
        connectors=dict(
            t_tubes=dict(
                num_classes={{_base_.cifar_like_classes}},
                checkpoint=analyser_ckpt))))

param_scheduler = dict(milestones=[3])
train_cfg = dict(max_epochs=4, val_interval=4)
auto_scale_lr = dict(base_batch_size=32)
