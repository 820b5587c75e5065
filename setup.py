# Copyright (c) mmakd contributors. All rights reserved.
import os
import os.path as osp
import re
import shutil
from setuptools import find_packages, setup
from setuptools.command.build_py import build_py
from typing import List

HERE = osp.dirname(osp.abspath(__file__))
#: What MIM and MMEngine's ``mmakd::`` config paths read from
#: ``mmakd/.mim``: links to the repository's folders in the source tree (and
#: so in an editable install), copies in a wheel.
MIM_FILES = ('configs', 'tools', 'model-index.yml')


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


class BuildPyWithMim(build_py):
    """``build_py`` that also copies :data:`MIM_FILES` into the built
    ``mmakd/.mim`` (every non-editable build: wheels, ``pip install .``)."""

    def run(self) -> None:
        super().run()
        if getattr(self, 'editable_mode', False):
            return  # the source tree's mmakd/.mim links serve the install
        target = osp.join(self.build_lib, 'mmakd', '.mim')
        os.makedirs(target, exist_ok=True)
        for name in MIM_FILES:
            src, dst = osp.join(HERE, name), osp.join(target, name)
            if osp.islink(dst) or osp.isfile(dst):
                os.remove(dst)
            elif osp.isdir(dst):
                shutil.rmtree(dst)
            if osp.isdir(src):
                shutil.copytree(
                    src,
                    dst,
                    ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
            else:
                shutil.copy2(src, dst)


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
        'Programming Language :: Python :: 3',
        'Topic :: Scientific/Engineering :: Artificial Intelligence',
    ],
    license='Apache-2.0',
    cmdclass=dict(build_py=BuildPyWithMim),
    zip_safe=False)
