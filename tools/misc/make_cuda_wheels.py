# Copyright (c) mmakd contributors. All rights reserved.
"""Make the wheel folder that ``tools/misc/cuda_check.py`` installs from on
a GPU machine without network.

    python tools/misc/make_cuda_wheels.py [--out .cuda-wheels]
        [--python 3.12] [--torch 2.11.0] [--cuda 13.0] [--arch 9.0]
        [--mmcv-from DIR ...] [--build-mmcv] [--build-python PY]
        [--include NAME ...]

Run it with mmakd's environment (``make env``): every distribution mmakd's
stack needs that the GPU machine's image lacks is fetched at the version
installed here, as a wheel for ``--python`` (``pip download``; a package
PyPI has only as source is built here and must be pure Python). mmcv 2.1.0
with CUDA ops is taken from the first ``--mmcv-from`` folder holding a
wheel for that Python (default: ``../shared/wheelhouse/
cuda{cuda}-py{py}-torch{torch}``), or compiled with
``tools/misc/build_mmcv.py`` in a venv of ``--build-python`` with torch
``--torch`` and nvcc (``--build-mmcv``, or when none is found; 20-30 min on
2 cores), then stripped of its debug information (109 MB of shared library
becomes 27 MB). The folder gets a ``manifest.json``; rerunning keeps the
wheels already there. The output is git-ignored and travels to the GPU
machine as a carried path: the tool prints its size and what travels in all
(the device tool's limit is 64 MiB).
"""
import argparse
import os.path as osp
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)

from mmakd.apis.cuda_check import recipe, wheels  # noqa: E402

#: The device tool's limit on what travels: tracked and untracked files
#: that git does not ignore, plus carried paths.
TRAVEL_LIMIT = 64 * 2**20


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--out',
        default=osp.join(REPO, '.cuda-wheels'),
        help='the wheel folder (default: %(default)s)')
    parser.add_argument('--python', default='3.12', help='target Python')
    parser.add_argument('--torch', default='2.11.0', help='target torch')
    parser.add_argument('--cuda', default='13.0', help="target torch's CUDA")
    parser.add_argument(
        '--arch', default='9.0', help='TORCH_CUDA_ARCH_LIST for a build')
    parser.add_argument(
        '--mmcv-from',
        nargs='+',
        default=[osp.normpath(osp.join(REPO, recipe.DEFAULT_MMCV_FOLDER))],
        metavar='DIR',
        help='folders with a prebuilt mmcv wheel ({cuda}, {python}, {py}, '
        '{torch} are filled in; default: %(default)s)')
    parser.add_argument(
        '--build-mmcv',
        action='store_true',
        help='compile mmcv even if a prebuilt wheel is found')
    parser.add_argument(
        '--build-python',
        help='interpreter of --python for the build venv (default: '
        'python3.12 on PATH)')
    parser.add_argument(
        '--include',
        nargs='+',
        default=[],
        metavar='NAME',
        help='also ship these, although the GPU image has them')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    manifest = recipe.make_wheelhouse(
        args.out,
        REPO,
        python_version=args.python,
        torch=args.torch,
        cuda=args.cuda,
        arch=args.arch,
        mmcv_folders=args.mmcv_from,
        build_mmcv=args.build_mmcv,
        build_python=args.build_python,
        include=args.include,
        command=' '.join(['python', 'tools/misc/make_cuda_wheels.py'] +
                         sys.argv[1:]))
    total = wheels.travel_bytes(REPO, [args.out])
    print(f"[wheels] {len(manifest['wheels'])} wheels, "
          f"{manifest['total_bytes'] / 2**20:.1f} MiB in {args.out}; with "
          f'the working tree {total / 2**20:.1f} MiB travel (limit '
          f'{TRAVEL_LIMIT / 2**20:.0f} MiB)')
    if total > TRAVEL_LIMIT:
        sys.exit('[wheels] too large to travel to the GPU machine')


if __name__ == '__main__':
    main()
