# AT + multi-granularity distillation (granularity-wise distillation and
# stable excitation), WRN-40-2 -> WRN-16-2 on CIFAR-100. Deltas from the AT
# twin: the student carries the tubes, their codes mimic the frozen teacher
# tubes' (temperatures 2 and 8), and the KL term's target becomes the mean
# of the teacher's and its tube decoders' logits.
_base_ = ['./at_wrn-40-2_wrn-16-2_1xb64-240e_cifar100.py']

analyser_ckpt = 'work_dirs/mgkd-analyser_wrn-40-2_1xb64-60e_cifar100/epoch_60.pth'  # noqa: E501
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
            s_tubes=dict(
                type='MGKDAnalyser', in_channels=128, bottlenecks=(64, 256)),
            t_tubes=dict(
                type='MGKDAnalyser',
                in_channels=128,
                num_classes=100,
                bottlenecks=(64, 256),
                checkpoint=analyser_ckpt)),
        distill_losses=dict(
            loss_kd=dict(
                _delete_=True,
                type='MGKDStableExcitationLoss',
                tau=4,
                loss_weight=1.0),
            loss_narrow=dict(
                type='MGKDGranularityLoss', tau=2, loss_weight=1.0),
            loss_wide=dict(type='MGKDGranularityLoss', tau=8,
                           loss_weight=1.0)),
        loss_forward_mappings=dict(
            loss_kd=dict(
                preds_T_narrow=dict(connector_idx=2, **t_tubes),
                preds_T_wide=dict(connector_idx=3, **t_tubes)),
            loss_narrow=dict(
                preds_S=dict(connector_idx=0, **s_tubes),
                preds_T=dict(connector_idx=0, **t_tubes)),
            loss_wide=dict(
                preds_S=dict(connector_idx=1, **s_tubes),
                preds_T=dict(connector_idx=1, **t_tubes)))))
