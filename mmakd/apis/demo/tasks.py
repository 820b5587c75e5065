# Copyright (c) mmakd contributors. All rights reserved.
"""The demo's tasks: their runs, data, lengths and ``--cfg-options``."""
from typing import Any, Dict, List, Optional, Tuple

__all__ = [
    'DEMO', 'MGKD', 'DET', 'TEACHER_CKPT', 'SHAPES_DESC', 'SHAPES_SIZES',
    'TASKS', 'generate', 'run_options'
]

DEMO = 'configs/akd/demo'
MGKD = 'configs/mgkd/mmpretrain/synthetic'


def _run(name: str,
         config: str,
         label: str,
         length: str = 'student',
         checkpoints: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """One training run of a demo: ``checkpoints`` maps a config key to the
    earlier run whose last checkpoint it loads."""
    return dict(
        name=name,
        config=config,
        label=label,
        length=length,
        checkpoints=checkpoints or {})


TEACHER_CKPT = {'model.teacher_ckpt': 'teacher'}
DET = 'retinanet-r18-w32_retinanet-r18-w8_1xb8-400it_shapes-128.py'
SHAPES_DESC = ('the generated shapes dataset ({num_train} training and '
               '{num_val} validation images, 128x128)')
#: The shapes dataset of each mode and its logging interval: det and seg
#: share the dataset (``--task all`` generates it once for both).
SHAPES_SIZES = dict(
    full=dict(num_train=400, num_val=100, log_interval=20),
    quick=dict(num_train=48, num_val=16, log_interval=10))


def _shapes_task(runs: List[Dict[str, Any]], not_data: str,
                 iters: Dict[str, Tuple[int, int]],
                 **settings: Any) -> Dict[str, Any]:
    """An iteration-based task on the synthetic shapes data.

    Args:
        runs (list[dict]): The task's runs, in training order.
        not_data (str): What ``data_desc`` adds after :data:`SHAPES_DESC`
            (the real dataset the format is that of).
        iters (dict[str, tuple[int, int]]): The teacher's and the students'
            iterations of each mode (``full``, ``quick``).
        **settings: The task's metric, losses and schedule keys.
    """
    task = dict(
        runs=runs,
        data='synthetic shapes',
        data_desc=SHAPES_DESC + not_data,
        by_epoch=False,
        **settings)
    for mode, (teacher_iters, student_iters) in iters.items():
        task[mode] = dict(
            teacher_iters=teacher_iters,
            student_iters=student_iters,
            **SHAPES_SIZES[mode])
    return task


TASKS: Dict[str, Dict[str, Any]] = dict(
    # AKD: RetinaNet on the synthetic shapes data in COCO format,
    # iteration-based; CWD on the FPN levels as in MMRazor's recipe.
    det=_shapes_task(
        runs=[
            _run(
                'teacher',
                f'{DEMO}/retinanet_r18-w32_fpn-64_1xb8-2000it_shapes-128.py',
                'teacher',
                length='teacher'),
            _run('student',
                 f'{DEMO}/retinanet_r18-w8_fpn-64_1xb8-400it_shapes-128.py',
                 'student alone'),
            _run('cwd', f'{DEMO}/cwd_fpn_{DET}', 'student + CWD (FPN)',
                 'student', TEACHER_CKPT),
            _run('akd_reference', f'{DEMO}/akd-reference_cwd_fpn_{DET}',
                 'student + AKD, reference setting (K=1, p=0.1)', 'student',
                 TEACHER_CKPT),
            _run('akd', f'{DEMO}/akd_cwd_fpn_{DET}',
                 'student + AKD, recommended setting', 'student',
                 TEACHER_CKPT),
        ],
        not_data=' in COCO format, not COCO',
        iters=dict(full=(2000, 400), quick=(30, 20)),
        metric='coco/bbox_mAP',
        # CocoMetric reports fractions; tables show mAP points.
        scale=100,
        metric_label='bbox mAP',
        task_loss='loss_cls',
        distill_loss='distill.loss_cwd_fpn',
        schedule=('param_scheduler.1.end', 'param_scheduler.1.T_max'),
        evaluator_ann='annotations/instances_val.json'),
    # AKD: PSPNet on the synthetic shapes segmentation data, iteration-based.
    seg=_shapes_task(
        runs=[
            _run(
                'teacher', f'{DEMO}/pspnet_r18-w32_1xb8-1600it_'
                'shapes-128.py',
                'teacher',
                length='teacher'),
            _run('student', f'{DEMO}/pspnet_r18-w8_1xb8-600it_shapes-128.py',
                 'student alone'),
            _run(
                'cwd', f'{DEMO}/cwd_logits_pspnet-r18-w32_pspnet-r18-w8_'
                '1xb8-600it_shapes-128.py', 'student + CWD', 'student',
                TEACHER_CKPT),
            _run(
                'akd', f'{DEMO}/akd_cwd_logits_pspnet-r18-w32_pspnet-r18-w8_'
                '1xb8-600it_shapes-128.py', 'student + AKD (CWD + Avatars)',
                'student', TEACHER_CKPT),
        ],
        not_data=', not Cityscapes',
        iters=dict(full=(1600, 600), quick=(40, 30)),
        metric='mIoU',
        task_loss='decode.loss_ce',
        distill_loss='distill.loss_cwd',
        schedule=('param_scheduler.0.end', )),
    # Multi-granularity distillation: CIFAR-100 configs on the synthetic
    # CIFAR-like data, epoch-based (the configs' own 3-4 epochs; quick mode
    # shrinks the dataset instead).
    mgkd=dict(
        runs=[
            _run('teacher', f'{MGKD}/resnet20-cifar_1xb32-4e_cifar-like.py',
                 'teacher ResNet-20'),
            _run(
                'analyser', f'{MGKD}/mgkd-analyser_resnet20-cifar_1xb32-3e_'
                'cifar-like.py',
                "stage 1: tubes (narrow tube's decoder)",
                checkpoints=TEACHER_CKPT),
            _run('student', f'{MGKD}/resnet8-cifar_1xb32-4e_cifar-like.py',
                 'student ResNet-8 alone'),
            _run(
                'kd', f'{MGKD}/kd_resnet20-cifar_resnet8-cifar_1xb32-4e_'
                'cifar-like.py',
                'student + KD',
                checkpoints=TEACHER_CKPT),
            _run(
                'mgkd', f'{MGKD}/mgkd_kd_resnet20-cifar_resnet8-cifar_1xb32-'
                '4e_cifar-like.py',
                'student + KD + MGKD',
                checkpoints={
                    'model.teacher_ckpt': 'teacher',
                    'model.distiller.connectors.t_tubes.checkpoint': 'analyser'
                }),
        ],
        data='synthetic CIFAR-like',
        data_desc='the generated CIFAR-100-format dataset (20 classes, '
        '{num_train} training and {num_val} test images, 32x32), not '
        'CIFAR-100',
        metric='accuracy/top1',
        task_loss='loss',
        distill_loss='distill.loss_stable',
        by_epoch=True,
        full=dict(train_per_class=50, test_per_class=20, log_interval=10),
        quick=dict(train_per_class=4, test_per_class=2, log_interval=1)),
)


def generate(task: str, size: Dict[str, Any], root: str,
             seed: int) -> Tuple[int, int]:
    """Write the task's synthetic dataset (idempotent).

    Returns:
        tuple[int, int]: The numbers of training and validation images.
    """
    if task in ('det', 'seg'):
        from mmakd.datasets.shapes import generate_shapes
        generate_shapes(
            root,
            num_train=size['num_train'],
            num_val=size['num_val'],
            size=128,
            seed=seed)
        return size['num_train'], size['num_val']
    from mmakd.datasets import generate_cifar_like
    classes = 20  # configs/mgkd/mmpretrain/synthetic: cifar_like_classes
    generate_cifar_like(
        root,
        num_classes=classes,
        train_per_class=size['train_per_class'],
        test_per_class=size['test_per_class'],
        seed=seed)
    return (classes * size['train_per_class'],
            classes * size['test_per_class'])


def run_options(task: Dict[str, Any], size: Dict[str, Any], data_root: str,
                seed: int, run: Dict[str, Any]) -> Dict[str, Any]:
    """--cfg-options for one run: data location, length, seed."""
    options: Dict[str, Any] = {'randomness.seed': seed}
    for split in ('train', 'val', 'test'):
        options[f'{split}_dataloader.dataset.data_root'] = data_root
    options['default_hooks.logger.interval'] = size['log_interval']
    if task.get('evaluator_ann'):
        for split in ('val', 'test'):
            options[f'{split}_evaluator.ann_file'] = (
                data_root + task['evaluator_ann'])
    if not task['by_epoch']:
        iters = size[f"{run['length']}_iters"]
        options.update({
            'train_cfg.max_iters': iters,
            'train_cfg.val_interval': iters,
            'default_hooks.checkpoint.interval': iters,
        })
        options.update({key: iters for key in task['schedule']})
    return options
