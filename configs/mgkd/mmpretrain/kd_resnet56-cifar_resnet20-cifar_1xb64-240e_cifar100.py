# KD baseline (the twin of mgkd_kd_*): ResNet-56 -> ResNet-20 on CIFAR-100
# with the reference code's KD setting: 0.2 * CE + 0.8 * KL at temperature 4
# on the logits, 240 epochs.
_base_ = [
    './_base_/datasets/cifar100_bs64.py',
    './_base_/schedules/cifar100_240e_student.py', './_base_/cifar_runtime.py'
]

# The algorithm runs its model's own data preprocessor (stage 1: the
# teacher's; stage 2: the student's, checked against the teacher's); keep
# the dataset config's top-level one out of the algorithm.
data_preprocessor = None

teacher_cfg = '{{fileDirname}}/resnet56-cifar_1xb64-240e_cifar100.py'
student_cfg = '{{fileDirname}}/resnet20-cifar_1xb64-240e_cifar100.py'
teacher_ckpt = 'work_dirs/resnet56-cifar_1xb64-240e_cifar100/epoch_240.pth'

model = dict(
    _scope_='mmrazor',
    type='FlexibleTeacherDistill',
    architecture=dict(
        cfg_path=student_cfg, cfg_options={'model.head.loss.loss_weight':
                                           0.2}),
    teacher=dict(cfg_path=teacher_cfg),
    teacher_ckpt=teacher_ckpt,
    distiller=dict(
        type='ConfigurableDistiller',
        student_recorders=dict(
            logits=dict(type='ModuleOutputs', source='head.fc')),
        teacher_recorders=dict(
            logits=dict(type='ModuleOutputs', source='head.fc')),
        distill_losses=dict(
            loss_kd=dict(type='KLDivergence', tau=4, loss_weight=0.8)),
        loss_forward_mappings=dict(
            loss_kd=dict(
                preds_S=dict(from_student=True, recorder='logits'),
                preds_T=dict(from_student=False, recorder='logits')))))
