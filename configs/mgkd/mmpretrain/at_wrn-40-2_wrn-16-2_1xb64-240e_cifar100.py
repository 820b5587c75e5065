# AT baseline (the twin of mgkd_at_*): WRN-40-2 -> WRN-16-2 on CIFAR-100
# with the reference code's AT setting: 1.0 * CE + 1.0 * KL at temperature
# 4 on the logits + 1000 * attention transfer on the outputs of the three
# stages.
_base_ = ['./kd_wrn-40-2_wrn-16-2_1xb64-240e_cifar100.py']

stages = (1, 2, 3)

model = dict(
    architecture=dict(cfg_options={'model.head.loss.loss_weight': 1.0}),
    distiller=dict(
        student_recorders={
            f'stage{i}':
            dict(type='ModuleOutputs', source=f'backbone.layer{i}')
            for i in stages
        },
        teacher_recorders={
            f'stage{i}':
            dict(type='ModuleOutputs', source=f'backbone.layer{i}')
            for i in stages
        },
        distill_losses=dict(
            loss_kd=dict(loss_weight=1.0),
            **{
                f'loss_at{i}': dict(type='ATLoss', loss_weight=1000.0)
                for i in stages
            }),
        loss_forward_mappings={
            f'loss_at{i}':
            dict(
                s_feature=dict(from_student=True, recorder=f'stage{i}'),
                t_feature=dict(from_student=False, recorder=f'stage{i}'))
            for i in stages
        }))
