# Copyright (c) mmakd contributors. All rights reserved.
__version__ = '0.1.0'


def parse_version_info(version_str: str) -> tuple:
    """Parse ``'0.1.0'`` into ``(0, 1, 0)``; pre-release tags are kept."""
    info = []
    for part in version_str.split('.'):
        info.append(int(part) if part.isdigit() else part)
    return tuple(info)


version_info = parse_version_info(__version__)
