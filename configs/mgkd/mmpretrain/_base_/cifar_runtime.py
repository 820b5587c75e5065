# Runtime shared by the CIFAR-100 configs: MMPretrain's defaults, mmakd
# loaded (backbones, MGKD modules), a log line every 50 iterations.
_base_ = ['mmpretrain::_base_/default_runtime.py']

custom_imports = dict(imports=['mmakd'], allow_failed_imports=False)
default_hooks = dict(logger=dict(interval=50))
