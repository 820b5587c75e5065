# A Wide ResNet WRN-d-k for CIFAR-100; the head reads 64 * k channels.
model = dict(
    type='ImageClassifier',
    backbone=dict(type='mmrazor.CifarWideResNet', depth=40, widen_factor=2),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=100,
        in_channels=128,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
