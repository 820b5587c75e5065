# Copyright (c) mmakd contributors. All rights reserved.
"""mmakd's demo: a real teacher -> student distillation on CPU, in minutes.

``--task det``, detection on the synthetic shapes dataset in COCO format
(MMDetection's ``CocoDataset`` and ``CocoMetric``, bbox mAP):

1. trains a RetinaNet teacher (ResNet-18 at width 32, FPN) from scratch,
2. trains the student (width 8) alone,
3. trains the student with CWD on the FPN levels (MMRazor's recipe),
4. with AKD in the reference code's setting (one dropout Avatar, p = 0.1,
   only the student standardised),
5. with AKD in mmakd's recommended setting.

``--task seg``, segmentation on the same images (Cityscapes layout):

1. trains a PSPNet teacher from scratch,
2. trains the student alone,
3. trains the student with the base distiller (CWD on logits),
4. trains it with AKD (the same CWD plus Avatars).

``--task mgkd``, multi-granularity distillation on the synthetic
CIFAR-100-format dataset (20 classes): a ResNet-20 teacher, stage 1 (the
teacher's two tubes), a ResNet-8 student alone, with KD, and with KD plus
multi-granularity distillation.

``--task ensemble``, the teacher-ensemble study of docs/ensemble.md on
the detection task: trains the teacher from 4 seeds, then, with
``tools/reproduce.py`` over 5 student seeds (100-104), CWD from one
teacher (seed 0), CWD from the mean of the 4 teachers
(``MultiTeacherDistill``) and AKD with 4 Avatars of the one teacher; it
reports how much of the ensemble's gain over CWD the Avatars recover, the
s/iter of each and the teachers' training time (``ensemble.{md,json}``).
Finished runs in the work directory are reused.

``--task all`` (what ``make demo`` runs) is ``det`` then ``seg``.

Every run is ``tools/train.py`` through the real MMDetection, MMSegmentation
or MMPretrain dataset classes, pipelines and metrics; the demo writes
``results.md``, ``results.json`` and ``curves.png`` into the work
directory (``WORK_DIR/<task>`` with ``--task all``). All numbers are
measured on synthetic data, and say so.

    python tools/demo.py                         # det + seg, < 30 min on 2
                                                 # CPU cores
    python tools/demo.py --task det --quick --work-dir DIR  # < 4 min
    python tools/demo.py --task seg              # ~14 min (quick: ~2 min)
    python tools/demo.py --task mgkd [--quick]   # ~15 min (quick: ~3 min)
    python tools/demo.py --task ensemble [--quick]  # ~50 min (quick: ~4)

The tasks, the study and their reports are ``mmakd.apis.demo``'s
(``run_demo``); this script is their command line.
"""
import argparse
import os.path as osp
import sys

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)

from mmakd.apis.demo import TASKS, run_demo  # noqa: E402


def parse_args() -> argparse.Namespace:
    """The demo's options (see the module docstring)."""
    parser = argparse.ArgumentParser(
        description='Distil a teacher into a student with and without AKD '
        'on synthetic data, on CPU.')
    parser.add_argument(
        '--task',
        choices=sorted(TASKS) + ['all', 'ensemble'],
        default='all',
        help='all: det, then seg (default)')
    parser.add_argument(
        '--quick',
        action='store_true',
        help='very few iterations (< 4 min per task): a smoke run')
    parser.add_argument(
        '--work-dir',
        default=None,
        help='default: work_dirs/akd_demo/<task>[_quick]; with --task all, '
        'each task writes into WORK_DIR/<task>')
    parser.add_argument(
        '--data',
        default=None,
        help='dataset folder (default: data/shapes or '
        'data/cifar-like, WORK_DIR/data with --quick); with --task all, '
        'only for det and seg, which share it')
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args()


def main() -> None:
    """Run the tasks the command line asks for."""
    args = parse_args()
    run_demo(args.task, args.quick, args.work_dir, args.data, args.seed)


if __name__ == '__main__':
    main()
