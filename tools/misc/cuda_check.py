# Copyright (c) mmakd contributors. All rights reserved.
"""A CUDA acceptance check: prove mmakd on a GPU machine in minutes.

    python tools/misc/cuda_check.py --out DIR [--device cuda|cpu]
        [--wheels .cuda-wheels] [--work DIR] [--steps NAME ...]
        [--keep-going]

First installs what the machine lacks from ``--wheels`` (made by
``tools/misc/make_cuda_wheels.py``; nothing is fetched), then runs, each as
the user's command line: one training iteration of the demo det and seg
AKD configs in float32 and with ``--amp`` (float16 on CUDA; the losses
finite, the Avatar weights logged), ``tools/test.py`` on the demo detector
(mmcv's NMS), the doctor on the demo AKD config, the unit tests marked
``device`` (``pytest -m device --device cuda``), and
``benchmark_distill.py`` on MMRazor's RetinaNet R101 -> R50 and PSPNet
R101 -> R18 pairs at full resolution, every case. One summary line per
step; the first failure stops the check and prints what failed (or, with
``--keep-going``, only the steps that need it are skipped). Everything goes
to ``--out``: ``summary.txt``, ``summary.json``, ``env.json``, the JSON and
Markdown of the benchmarks and the doctor, ``logs/<step>.log``. The exit
status is 0 only if every step passed.

``--device cpu`` runs the same steps on tiny inputs (CI does, so the check
cannot rot). docs/performance.md says how to run it on a lent GPU.
"""
import argparse
import importlib.util
import os
import os.path as osp
import sys
import tempfile
import time

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _bootstrap():
    """``mmakd/apis/cuda_check/bootstrap.py``, loaded by path: it installs
    what ``import mmakd`` needs, so it cannot come through the package."""
    path = osp.join(REPO, 'mmakd', 'apis', 'cuda_check', 'bootstrap.py')
    spec = importlib.util.spec_from_file_location('mmakd_cuda_bootstrap', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='\n'.join(__doc__.splitlines()[2:]))
    parser.add_argument('--out', required=True, help='the results folder')
    parser.add_argument('--device', choices=['cuda', 'cpu'], default='cuda')
    parser.add_argument(
        '--wheels',
        help='wheel folder with a manifest.json to install missing '
        'packages from (default: .cuda-wheels if it exists)')
    parser.add_argument(
        '--work',
        help='scratch folder for data and checkpoints (default: a '
        'temporary folder, removed afterwards)')
    parser.add_argument(
        '--steps', nargs='+', metavar='NAME', help='run only these steps')
    parser.add_argument(
        '--keep-going',
        action='store_true',
        help='after a failure, run every step that does not need the '
        'failed one')
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    os.makedirs(args.out, exist_ok=True)
    wheels = args.wheels
    if wheels is None and osp.isdir(osp.join(REPO, '.cuda-wheels')):
        wheels = osp.join(REPO, '.cuda-wheels')
    bootstrap = _bootstrap()
    start = time.time()
    try:
        installed = bootstrap.install(wheels)
    except bootstrap.InstallError as err:
        print(f'[cuda-check] install FAILED: {err}')
        return 1
    sys.path.insert(0, REPO)
    from mmakd.apis.cuda_check import plan_steps, run_steps
    install = dict(
        name='install',
        what='install what is missing from ' +
        (osp.relpath(wheels, REPO) if wheels else '(no wheel folder)'),
        command='python -m pip install --no-index --no-deps ' +
        ' '.join(installed['installed']),
        status='ok',
        seconds=round(time.time() - start, 1),
        detail=(f"{len(installed['installed'])} wheels "
                f"({installed['bytes'] / 2**20:.1f} MiB) installed"
                if installed['installed'] else 'nothing missing'))
    with tempfile.TemporaryDirectory(prefix='mmakd-cuda-check-') as tmp:
        out, work = osp.abspath(args.out), osp.abspath(args.work or tmp)
        steps = plan_steps(args.device, out, work)
        if args.steps:
            unknown = set(args.steps) - {s.name for s in steps}
            if unknown:
                print(f'[cuda-check] unknown steps: {sorted(unknown)}; the '
                      f'steps are: {[s.name for s in steps]}')
                return 2
            steps = [s for s in steps if s.name in args.steps]
        summary = run_steps(
            steps,
            args.out,
            REPO,
            keep_going=args.keep_going,
            header=dict(
                device=args.device,
                command=' '.join(['python', 'tools/misc/cuda_check.py'] +
                                 sys.argv[1:]),
                versions=installed['versions']),
            before=[install],
            placeholders={
                work: '$WORK',
                out: '$OUT',
                REPO + os.sep: ''
            })
    total = sum(s['seconds'] or 0 for s in summary['steps'])
    print(f"[cuda-check] {'passed' if summary['ok'] else 'FAILED'}: "
          f"{sum(s['status'] == 'ok' for s in summary['steps'])}/"
          f"{len(summary['steps'])} steps ok in {total:.0f} s; results in "
          f'{args.out}')
    return 0 if summary['ok'] else 1


if __name__ == '__main__':
    sys.exit(main())
