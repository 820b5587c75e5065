# KD + granularity-wise distillation only (the paper's "MAG"), WRN-40-2 ->
# WRN-16-2: KD keeps the teacher's logits as its target (no stable
# excitation); the student's tube codes mimic the teacher's at temperatures
# 2 and 8.
_base_ = ['./mgkd_kd_wrn-40-2_wrn-16-2_1xb64-240e_cifar100.py']

model = dict(
    distiller=dict(
        distill_losses=dict(
            _delete_=True,
            loss_kd=dict(type='KLDivergence', tau=4, loss_weight=0.8),
            loss_narrow=dict(
                type='MGKDGranularityLoss', tau=2, loss_weight=1.0),
            loss_wide=dict(type='MGKDGranularityLoss', tau=8,
                           loss_weight=1.0)),
        loss_forward_mappings=dict(
            _delete_=True,
            loss_kd=dict(
                preds_S=dict(from_student=True, recorder='logits'),
                preds_T=dict(from_student=False, recorder='logits')),
            loss_narrow=dict(
                preds_S=dict(
                    from_student=True,
                    recorder='feature',
                    connector='s_tubes',
                    connector_idx=0),
                preds_T=dict(
                    from_student=False,
                    recorder='feature',
                    connector='t_tubes',
                    connector_idx=0)),
            loss_wide=dict(
                preds_S=dict(
                    from_student=True,
                    recorder='feature',
                    connector='s_tubes',
                    connector_idx=1),
                preds_T=dict(
                    from_student=False,
                    recorder='feature',
                    connector='t_tubes',
                    connector_idx=1)))))
