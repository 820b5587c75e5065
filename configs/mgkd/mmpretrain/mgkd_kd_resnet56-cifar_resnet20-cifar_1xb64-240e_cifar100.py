# KD + multi-granularity distillation (granularity-wise distillation and
# stable excitation, the paper's "MAS"), ResNet-56 -> ResNet-20 on
# CIFAR-100. Needs stage 1's checkpoint (`analyser_ckpt`). Deltas from the
# KD twin:
# * the student carries the two tubes (encoders only, trained with it) on
#   its pooled feature; their codes mimic the frozen teacher tubes' codes
#   by KL at temperature 2 (narrow, 64-d) and 8 (wide, 256-d);
# * KD's target becomes the mean of the teacher's logits and its two tube
#   decoders' logits (stable excitation), same temperature and weight.
_base_ = ['./kd_resnet56-cifar_resnet20-cifar_1xb64-240e_cifar100.py']

# Written by stage 1:
# python tools/train.py configs/mgkd/mmpretrain/mgkd-analyser_resnet56-cifar_1xb64-60e_cifar100.py  # noqa: E501
analyser_ckpt = 'work_dirs/mgkd-analyser_resnet56-cifar_1xb64-60e_cifar100/epoch_60.pth'  # noqa: E501
student_channels = 64  # pooled feature of the student
teacher_channels = 64  # pooled feature of the teacher
num_classes = 100

pooled_feature = dict(type='ModuleInputs', source='head.fc')
s_tubes = dict(from_student=True, recorder='feature', connector='s_tubes')
t_tubes = dict(from_student=False, recorder='feature', connector='t_tubes')

model = dict(
    # Teacher and its frozen tubes in evaluation mode, as in stage 1 (the
    # reference MGKD code calls t_model.eval()).
    teacher_eval=True,
    distiller=dict(
        student_recorders=dict(feature=pooled_feature),
        teacher_recorders=dict(feature=pooled_feature),
        connectors=dict(
            # Outputs: (narrow code, wide code).
            s_tubes=dict(
                type='MGKDAnalyser',
                in_channels=student_channels,
                bottlenecks=(64, 256)),
            # Outputs: (narrow code, wide code, narrow logits, wide logits);
            # loaded from stage 1 and frozen.
            t_tubes=dict(
                type='MGKDAnalyser',
                in_channels=teacher_channels,
                num_classes=num_classes,
                bottlenecks=(64, 256),
                checkpoint=analyser_ckpt)),
        distill_losses=dict(
            _delete_=True,
            loss_stable=dict(
                type='MGKDStableExcitationLoss', tau=4, loss_weight=0.8),
            loss_narrow=dict(
                type='MGKDGranularityLoss', tau=2, loss_weight=1.0),
            loss_wide=dict(type='MGKDGranularityLoss', tau=8,
                           loss_weight=1.0)),
        loss_forward_mappings=dict(
            _delete_=True,
            loss_stable=dict(
                preds_S=dict(from_student=True, recorder='logits'),
                preds_T=dict(from_student=False, recorder='logits'),
                preds_T_narrow=dict(connector_idx=2, **t_tubes),
                preds_T_wide=dict(connector_idx=3, **t_tubes)),
            loss_narrow=dict(
                preds_S=dict(connector_idx=0, **s_tubes),
                preds_T=dict(connector_idx=0, **t_tubes)),
            loss_wide=dict(
                preds_S=dict(connector_idx=1, **s_tubes),
                preds_T=dict(connector_idx=1, **t_tubes)))))
