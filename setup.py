# Copyright (c) mmakd contributors. All rights reserved.
import os.path as osp
import re
from typing import List

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


def read_version() -> str:
    with open(osp.join(HERE, 'mmakd', 'version.py'), encoding='utf-8') as f:
        return re.search(r"__version__ = '([^']+)'", f.read()).group(1)


def parse_requirements(*names: str) -> List[str]:
    """Requirement lines of ``requirements/<name>.txt``, without comments."""
    requirements = []
    for name in names:
        path = osp.join(HERE, 'requirements', f'{name}.txt')
        with open(path, encoding='utf-8') as f:
            for line in f:
                line = line.split('#', 1)[0].strip()
                if line and not line.startswith('-'):
                    requirements.append(line)
    return requirements


with open(osp.join(HERE, 'README.md'), encoding='utf-8') as f:
    long_description = f.read()

setup(
    name='mmakd',
    version=read_version(),
    description='Avatar Knowledge Distillation and multi-granularity '
    'distillation for MMDetection and MMSegmentation via MMRazor',
    long_description=long_description,
    long_description_content_type='text/markdown',
    keywords='knowledge distillation, object detection, semantic '
    'segmentation, mmrazor',
    packages=find_packages(exclude=('configs', 'tools', 'tests', 'docs')),
    include_package_data=True,
    python_requires='>=3.8',
    install_requires=parse_requirements('torch', 'mminstall', 'runtime'),
    extras_require=dict(tests=parse_requirements('tests')),
    classifiers=[
        'Development Status :: 4 - Beta',
        'License :: OSI Approved :: Apache Software License',
        'Programming Language :: Python :: 3',
        'Topic :: Scientific/Engineering :: Artificial Intelligence',
    ],
    license='Apache License 2.0',
    zip_safe=False)
