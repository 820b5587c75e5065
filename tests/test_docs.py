# Copyright (c) mmakd contributors. All rights reserved.
"""Every relative link and image of the README and docs/ points at a file
or folder of the repository (results, logs and pictures move; links must
follow)."""
import glob
import os.path as osp
import re

import pytest

from helpers import REPO

PAGES = [osp.join(REPO, 'README.md')] + sorted(
    glob.glob(osp.join(REPO, 'docs', '**', '*.md'), recursive=True))
LINK = re.compile(r'\]\(([^)\s]+)\)')


def _links(page):
    with open(page) as f:
        text = f.read()
    # code blocks hold commands, not links
    text = re.sub(r'```.*?```', '', text, flags=re.S)
    for target in LINK.findall(text):
        if re.match(r'[a-z]+:', target) or target.startswith('#'):
            continue
        yield target.split('#')[0]


@pytest.mark.parametrize('page', PAGES, ids=lambda p: osp.relpath(p, REPO))
def test_relative_links_resolve(page):
    missing = [
        t for t in _links(page)
        if not osp.exists(osp.join(osp.dirname(page), t))
    ]
    assert not missing, f'{osp.relpath(page, REPO)} links to {missing}'


def test_the_link_check_sees_links():
    readme = list(_links(osp.join(REPO, 'README.md')))
    assert 'docs/evidence.md' in readme and len(readme) > 10
