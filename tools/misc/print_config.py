# Copyright (c) mmakd contributors. All rights reserved.
"""Print the fully resolved config: every ``_base_`` merged and every
``--cfg-options`` override applied.

CONFIG is a local file or a config shipped by an installed package
(``mmrazor::distill/mmdet/cwd/...``), as for ``tools/train.py``::

    python tools/misc/print_config.py CONFIG \
        [--cfg-options model.distiller.avatars.num_avatars=4] \
        [--save resolved.py]
"""
import argparse
import os
import os.path as osp
from typing import List, Optional

from mmengine.config import DictAction

from mmakd.utils import load_config


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Print the whole config')
    parser.add_argument('config', help='config file, or package::path')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, xxx=yyy (e.g. '
        'model.distiller.avatars.num_avatars=4); lists as key="[a,b]"')
    parser.add_argument(
        '--save',
        metavar='PATH',
        help='also write the resolved config to PATH (.py, .json or .yaml)')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    print(f'Config:\n{cfg.pretty_text}')
    if args.save:
        os.makedirs(osp.dirname(osp.abspath(args.save)), exist_ok=True)
        cfg.dump(args.save)
        print(f'Saved the resolved config to {args.save}')


if __name__ == '__main__':
    main()
