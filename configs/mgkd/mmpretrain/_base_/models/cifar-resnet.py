# A CIFAR ResNet-(6n+2) for CIFAR-100 (16/32/64 channels); set the depth in
# the config that inherits this one.
model = dict(
    type='ImageClassifier',
    backbone=dict(type='mmrazor.CifarResNet', depth=56),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=100,
        in_channels=64,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
