# Copyright (c) mmakd contributors. All rights reserved.
"""Every relative link and image of the README and docs/ points at a file
or folder of the repository (results, logs and pictures move; links must
follow)."""
import glob
import json
import os.path as osp
import re
import subprocess

import pytest

from helpers import REPO, load_tool

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


# An absolute path of the machine that wrote a file: a checkout, a virtual
# environment, a temporary or home folder. Committed results use paths
# relative to the repository instead, and placeholders for what lay outside
# it: ``<tmp>`` (the temporary folder), ``<home>``, ``<site-packages>``,
# ``<python>`` (the interpreter's installation) and ``<outside>`` (any other
# folder); the interpreter of a command is ``python``
# (``mmakd.apis.experiment.portable_text`` and ``portable_path``, which
# ``tools/reproduce.py`` and ``tools/demo.py`` write with).
MACHINE_PATH = re.compile(
    r'(?<![\w.<>~-])/(?:work|tmp|root|home|usr|opt|Users|mnt|private)/'
    r'|[\w.-]*/(?:site|dist)-packages/|/\.venv/|/\.pyenv/')
# Not the writer's machine: PyTorch's own build settings (its build host's
# compiler) in the environment block of every MMEngine log, and paths a user
# typed in the error messages docs/user_guide.md quotes.
NOT_A_MACHINE_PATH = re.compile(r'CXX_COMPILER=/opt/rh/gcc-toolset-\d+/root'
                                r"/usr/bin/c\+\+|'/tmp/(?:trunc|t)\.pth'")


def _committed_text_files():
    files = subprocess.run(['git', 'ls-files', 'README.md', 'docs'],
                           cwd=REPO,
                           capture_output=True,
                           text=True,
                           check=True).stdout.split()
    for name in files:
        path = osp.join(REPO, name)
        if not osp.isfile(path):
            continue
        with open(path, 'rb') as f:
            data = f.read()
        if b'\0' in data:  # pictures
            continue
        yield name, data.decode('utf-8', errors='replace')


def test_committed_docs_and_results_hold_no_machine_paths():
    """Issue 24, point 8: results, logs, dumped configs and pages name no
    absolute path of the machine that made them (see MACHINE_PATH for the
    convention: paths relative to the repository, ``<tmp>``, ``<home>``,
    ``<site-packages>``, ``<python>``, ``<outside>`` placeholders)."""
    found = []
    scanned = 0
    for name, text in _committed_text_files():
        scanned += 1
        for number, line in enumerate(text.splitlines(), 1):
            match = MACHINE_PATH.search(NOT_A_MACHINE_PATH.sub('', line))
            if match:
                start, end = max(0, match.start() - 30), match.end() + 40
                found.append(f'{name}:{number}: ...{line[start:end]}...')
    assert scanned > 200
    assert not found, f'{len(found)} lines with machine paths:\n' + '\n'.join(
        found[:40])


def test_the_machine_path_check_sees_paths():
    for line in ('"/work/main/.venv/bin/python",',
                 "data_root = '/tmp/democlone/data/shapes/'",
                 '/root/.pyenv/versions/3.11.7/lib/python3.11/x.py:1: Warn',
                 'saved to /home/me/work_dirs/x.'):
        assert MACHINE_PATH.search(line), line
    for line in ('configs/akd/demo/x.py', '<tmp>/democlone/data/shapes/',
                 '<site-packages>/mmengine/utils/package_utils.py:17:',
                 'https://setuptools.pypa.io/en/latest/x.html', '0.2 s/iter',
                 'tests/data/golden/make_akd_losses.py'):
        assert not MACHINE_PATH.search(line), line


def test_inference_avatar_study_pages_follow_its_reports():
    """Issue 26: the family table and the numbers the README and the study
    page quote are those of the committed ``reproduce.json`` reports (a
    report rerun with more seeds and not carried into the pages fails)."""
    from mmakd.apis.comparison_family import (family_markdown, family_rows,
                                              load_reports)
    results = osp.join(REPO, 'docs', 'results', 'inference-avatars')
    with open(osp.join(results, 'family.json')) as f:
        family = json.load(f)
    assert len(family['reports']) == 9
    rows = family_rows(
        load_reports({
            name: osp.join(REPO, path)
            for name, path in family['reports'].items()
        }))
    with open(osp.join(results, 'family.md')) as f:
        assert f.read() == family_markdown(rows)
    pages = {}
    for page in ('README.md', 'docs/evidence-inference-avatars.md'):
        with open(osp.join(REPO, page)) as f:
            pages[page] = ' '.join(f.read().split())
    for row in rows:
        lo, hi = row['ci95']
        ci = f'[{lo:+.2f}, {hi:+.2f}]'
        # the study's table row, and the README's table (not cwd_std)
        assert f'{row["diff"]:+.2f} ± {row["diff_std"]:.2f} | {ci}' in pages[
            'docs/evidence-inference-avatars.md'], row['name']
        if not row['name'].endswith('/cwd_std'):
            assert f'{row["diff"]:+.2f} {ci}' in pages['README.md'], row[
                'name']
    # the decision the pages state: no positive difference survives Holm
    assert not [r for r in rows if r['diff'] > 0 and r['p_holm'] < 0.05]
    assert 'They do not teach better than CWD' in pages['README.md']


def test_the_kill_figure_follows_the_kill_test():
    """docs/user_guide.md's kill -9 table and the README's count are those
    of tests/test_tools/test_kill_resume.py (which fails when a resumed
    run does not match)."""
    kill = load_tool('tests/test_tools/test_kill_resume.py', 'kill_resume')
    total = len(kill.ALGORITHMS) * len(kill.KILL_POINTS)
    tests = [name for name in dir(kill) if name.endswith('_survives_kills')]
    assert len(tests) == len(kill.ALGORITHMS), tests
    with open(osp.join(REPO, 'docs', 'user_guide.md')) as f:
        guide = f.read()
    section = guide.split('### Kill it at any moment')[1].split(
        '### The random state')[0]
    rows = re.findall(r'^\| ([^|]+?) \| [^|]+ \| (\d+) \| (\d+) of (\d+) \|$',
                      section, re.M)
    assert [row[0] for row in rows] == list(kill.ALGORITHMS)
    for _, points, matched, tried in rows:
        assert int(points) == int(matched) == int(tried) == len(
            kill.KILL_POINTS)
    flat = ' '.join(section.split())
    assert f'{total} kill points in all; every resumed run matched' in flat
    phrases = dict(
        train='inside training iteration {}',
        save='inside the write of the checkpoint of iteration {}',
        val='inside the validation after iteration {}')
    for point in kill.KILL_POINTS:
        where, n = point.split(':')
        assert phrases[where].format(n) in flat, point
    with open(osp.join(REPO, 'README.md')) as f:
        readme = ' '.join(f.read().split())
    assert f'tested with SIGKILL at {total} points' in readme
