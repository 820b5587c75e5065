# Copyright (c) mmakd contributors. All rights reserved.
"""The CUDA acceptance kit's parts, on the CPU: the standard-library
installer (``bootstrap``), the wheel folder (closure, stripped mmcv,
manifest), the checks of each step's results, running steps, and the plan
of steps for both devices."""
import ast
import base64
import csv
import ctypes
import hashlib
import importlib.metadata
import io
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import zipfile

import pytest
import torch
from packaging.requirements import Requirement

import mmakd
from mmakd.apis.benchmark import CASES
from mmakd.apis.cuda_check import bootstrap, recipe, wheels
from mmakd.apis.cuda_check.bootstrap import InstallError
from mmakd.apis.cuda_check.checks import (CheckFailed, avatar_weights,
                                          check_benchmark, check_doctor,
                                          check_env, check_pytest, check_test,
                                          check_training)
from mmakd.apis.cuda_check.run import run_steps, summary_line
from mmakd.apis.cuda_check.steps import BENCH_TINY, Step, plan_steps
from helpers import REPO

#: This interpreter's ``X.Y``, as ``bootstrap.install`` compares it.
PYTHON = '.'.join(map(str, sys.version_info[:2]))
#: A wheel folder's manifest for a GPU machine with Python 3.12, torch 2.11.
TARGET = dict(python='3.12', torch='2.11.0', cuda='13.0', wheels=[])
#: The steps of the check, in order, on either device.
STEP_NAMES = [
    'env', 'data', 'det_teacher', 'det_akd', 'det_akd_amp', 'det_test',
    'seg_teacher', 'seg_akd', 'seg_akd_amp', 'doctor', 'unit_tests',
    'bench_retinanet', 'bench_pspnet'
]
#: A shared library with debug information to strip.
C_SOURCE = """
struct probe_pair { int first; int second; };

static int probe_sum(struct probe_pair pair) {
    return pair.first + pair.second;
}

int probe_answer(int value) {
    struct probe_pair pair = {value, 2};
    return probe_sum(pair);
}
"""
RECORD = 'pkg-1.0.dist-info/RECORD'


def record_hash(data: bytes) -> str:
    """A RECORD hash (PEP 376/427): urlsafe base64 of sha256, no padding."""
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest())
    return 'sha256=' + digest.decode().rstrip('=')


def write_wheel(path, files: dict, record: str = RECORD) -> None:
    """A wheel at ``path`` holding ``files`` (name: bytes) and a RECORD
    with the hash and size of each."""
    lines = [
        f'{name},{record_hash(data)},{len(data)}'
        for name, data in files.items()
    ] + [f'{record},,']
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        zf.writestr(record, '\n'.join(lines) + '\n')


@pytest.fixture(scope='module')
def shared_lib(tmp_path_factory) -> bytes:
    """``C_SOURCE`` compiled with ``-g -O0`` (debug information kept)."""
    if shutil.which('gcc') is None or shutil.which('strip') is None:
        pytest.skip('gcc and strip are needed to make a shared library')
    folder = tmp_path_factory.mktemp('lib')
    source, lib = folder / 'probe.c', folder / 'probe.so'
    source.write_text(C_SOURCE)
    subprocess.run(
        ['gcc', '-g', '-O0', '-shared', '-fPIC', '-o',
         str(lib),
         str(source)],
        check=True)
    return lib.read_bytes()


@pytest.fixture
def wheel_files(shared_lib) -> dict:
    """The files of a platform wheel ``pkg-1.0`` with a shared library."""
    return {
        'pkg/__init__.py':
        b'from . import _lib  # noqa\n',
        'pkg/_lib.so':
        shared_lib,
        'pkg-1.0.dist-info/METADATA':
        b'Metadata-Version: 2.1\nName: pkg\nVersion: 1.0\n',
        'pkg-1.0.dist-info/WHEEL':
        (b'Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: false\n'
         b'Tag: cp312-cp312-linux_x86_64\n'),
    }


def load_answer(lib: bytes, path) -> int:
    """``probe_answer(40)`` of the shared library ``lib``, loaded from
    ``path``."""
    path.write_bytes(lib)
    return ctypes.CDLL(str(path)).probe_answer(40)


# bootstrap ------------------------------------------------------------------


def test_read_manifest_says_how_to_make_the_folder(tmp_path):
    with pytest.raises(InstallError, match='make_cuda_wheels.py'):
        bootstrap.read_manifest(str(tmp_path))
    (tmp_path / 'manifest.json').write_text(json.dumps(TARGET))
    assert bootstrap.read_manifest(str(tmp_path)) == TARGET


def test_check_target_refuses_another_python():
    with pytest.raises(InstallError) as err:
        bootstrap.check_target(TARGET, '3.11', '2.11.0')
    assert 'Python 3.12' in str(err.value)
    assert 'this is Python 3.11' in str(err.value)
    assert '--python 3.11' in str(err.value)


def test_check_target_compares_torch_releases():
    # the local part (+cu130) is not the release
    assert bootstrap.check_target(TARGET, '3.12', '2.11.0+cu130') is None
    assert bootstrap.check_target(
        dict(TARGET, torch='2.11.0+cu130'), '3.12', '2.11.0+cpu') is None
    for other in ('2.12.0+cu130', '2.11.1'):
        with pytest.raises(InstallError) as err:
            bootstrap.check_target(TARGET, '3.12', other)
        assert 'torch 2.11.0' in str(err.value)
        assert f'this machine has torch {other}' in str(err.value)
        assert f"--torch {other.split('+')[0]}" in str(err.value)
    with pytest.raises(InstallError, match='torch is not installed'):
        bootstrap.check_target(TARGET, '3.12', None)


def test_wheels_to_install_are_those_not_installed_at_their_version():
    mmengine = importlib.metadata.version('mmengine')
    listed = [('mmengine', mmengine), ('mmengine', '0.0.1'),
              ('no-such-dist-xyz', '1.0'),
              ('model-index', importlib.metadata.version('model-index'))]
    manifest = dict(
        TARGET, wheels=[dict(name=n, version=v) for n, v in listed])
    todo = bootstrap.wheels_to_install(manifest)
    # model-index: a normalized name finds model_index's metadata
    assert [(w['name'], w['version'])
            for w in todo] == [('mmengine', '0.0.1'),
                               ('no-such-dist-xyz', '1.0')]


def test_bootstrap_imports_only_the_standard_library():
    """cuda_check.py loads it before mmakd's dependencies are installed."""
    with open(bootstrap.__file__) as f:
        tree = ast.parse(f.read())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split('.')[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f'relative import of {node.module}'
            imported.add(node.module.split('.')[0])
    assert {'importlib', 'json', 'subprocess'} <= imported
    assert imported - set(sys.stdlib_module_names) == set()


def test_bootstrap_loads_without_site_packages():
    """In an interpreter without site-packages (``-S``) it loads by path,
    finds the whole stack missing and asks for a wheel folder."""
    code = ('import importlib.util, json, sys\n'
            "spec = importlib.util.spec_from_file_location('b', sys.argv[1])\n"
            'b = importlib.util.module_from_spec(spec)\n'
            'spec.loader.exec_module(b)\n'
            'try:\n'
            '    b.install(None)\n'
            'except b.InstallError as err:\n'
            '    print(json.dumps([b.missing_stack(), str(err)]))\n')
    proc = subprocess.run(
        [sys.executable, '-I', '-S', '-c', code, bootstrap.__file__],
        capture_output=True,
        text=True,
        timeout=60)
    assert proc.returncode == 0, proc.stderr
    missing, message = json.loads(proc.stdout)
    assert missing == [name for name, _ in bootstrap.STACK]
    assert message.startswith('not installed: mmcv, mmdet, mmengine, ')
    assert message.endswith('give a wheel folder with --wheels')


def test_install_without_folder_checks_the_stack_imports():
    """Nothing is missing here: nothing installed, and a fresh interpreter
    imports the stack (about 10 s)."""
    echoed = []
    result = bootstrap.install(None, echo=echoed.append)
    assert result['installed'] == [] and result['bytes'] == 0
    versions = result['versions']
    assert versions['mmakd'] == mmakd.__version__
    assert versions['torch'] == torch.__version__
    assert versions['python'] == sys.version.split()[0]
    for name in ('mmcv', 'mmengine', 'mmdet', 'mmrazor', 'mmpretrain'):
        assert versions[name] == importlib.metadata.version(name)
    assert versions['mmseg'] == importlib.metadata.version('mmsegmentation')
    assert echoed == []


def test_install_refuses_a_folder_for_another_python_before_pip(tmp_path):
    """The interpreter given does not exist: had ``install`` run pip, it
    would raise FileNotFoundError, not InstallError."""
    other = '3.99' if PYTHON != '3.99' else '3.98'
    wheel = dict(
        file='no_such_dist_xyz-1.0-py3-none-any.whl',
        name='no-such-dist-xyz',
        version='1.0',
        bytes=10,
        sha256='0' * 64)
    (tmp_path / 'manifest.json').write_text(
        json.dumps(
            dict(
                TARGET, python=other, torch=torch.__version__,
                wheels=[wheel])))
    echoed = []
    with pytest.raises(InstallError) as err:
        bootstrap.install(
            str(tmp_path),
            python=str(tmp_path / 'no-python'),
            echo=echoed.append)
    assert f'made for Python {other}' in str(err.value)
    assert f'this is Python {PYTHON}' in str(err.value)
    assert echoed == []


# wheels ---------------------------------------------------------------------


def needs(name: str) -> set:
    """The normalized distributions ``name`` requires unconditionally here
    (no extra, markers of this interpreter)."""
    found = set()
    for text in importlib.metadata.distribution(name).requires or []:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate({'extra': ''}):
            found.add(wheels.normalize(req.name))
    return found


def test_stack_closure_is_what_the_roots_need_as_installed():
    closure = dict(wheels.stack_closure(roots=('mmengine', ), present=()))
    for name in ('mmengine', 'addict', 'termcolor', 'yapf'):
        assert closure[name] == importlib.metadata.version(name)
    assert 'mmcv' not in closure
    # mmcv's wheel is made apart, but what it needs is shipped
    only_mmcv = dict(wheels.stack_closure(roots=(), present=()))
    assert needs('mmcv') and needs('mmcv') <= set(only_mmcv)
    assert 'mmcv' not in only_mmcv
    for name, version in closure.items():
        assert version == importlib.metadata.version(name)
        # closed under "needs"
        assert needs(name) <= set(closure), name
    assert list(closure) == sorted(closure)


def test_stack_closure_leaves_out_what_is_present():
    full = dict(wheels.stack_closure(roots=('mmengine', ), present=()))
    # only yapf needs platformdirs, which needs nothing
    assert {name for name in full if 'platformdirs' in needs(name)} == {'yapf'}
    assert needs('yapf') == {'platformdirs'}
    closure = dict(
        wheels.stack_closure(roots=('mmengine', ), present=('yapf', )))
    assert closure == {
        name: version
        for name, version in full.items()
        if name not in ('yapf', 'platformdirs')
    }
    # present names are normalized too
    assert dict(
        wheels.stack_closure(roots=('mmengine', ),
                             present=('YAPF', ))) == closure


def test_stack_closure_evaluates_markers_for_the_target_python():
    """importlib-metadata needs lazy-importer on Python < 3.15 only (its
    metadata says so): the closure follows the target's version, not this
    interpreter's."""
    needs = importlib.metadata.requires('importlib-metadata')
    assert any(
        r.startswith('lazy-importer') and '< "3.15"' in r for r in needs)
    names = {
        py:
        dict(
            wheels.stack_closure(
                roots=('importlib-metadata', ), present=(), python_version=py))
        for py in ('3.12', '3.15')
    }
    assert 'lazy-importer' in names['3.12']
    assert 'lazy-importer' not in names['3.15']
    assert 'importlib-metadata' in names['3.15']


def test_stack_closure_of_a_distribution_not_installed():
    with pytest.raises(RuntimeError, match='no-such-dist-xyz.*make env'):
        wheels.stack_closure(roots=('no_such_dist_xyz', ), present=())


def test_strip_wheel_keeps_code_and_rewrites_the_record(tmp_path, wheel_files):
    src, dst = tmp_path / 'pkg.whl', tmp_path / 'stripped.whl'
    write_wheel(src, wheel_files)
    sizes = wheels.strip_wheel(str(src), str(dst))
    assert sizes == dict(before=osp.getsize(src), after=osp.getsize(dst))
    assert sizes['after'] < sizes['before']
    with zipfile.ZipFile(dst) as zf:
        contents = {name: zf.read(name) for name in zf.namelist()}
    assert sorted(contents) == sorted([*wheel_files, RECORD])
    rows = list(csv.reader(io.StringIO(contents[RECORD].decode())))
    assert sorted(row[0] for row in rows) == sorted(contents)
    for name, digest, size in rows:
        if name == RECORD:
            assert (digest, size) == ('', '')
        else:
            assert digest == record_hash(contents[name]), name
            assert size == str(len(contents[name])), name
    for name, data in wheel_files.items():
        if name != 'pkg/_lib.so':
            assert contents[name] == data, name
    lib = contents['pkg/_lib.so']
    assert len(lib) < len(wheel_files['pkg/_lib.so'])
    assert b'.debug_info' in wheel_files['pkg/_lib.so']
    assert b'.debug_info' not in lib
    # symbols (the static function's too: --strip-debug, not --strip-all)
    # and code are kept
    assert b'.symtab' in lib and b'probe_sum' in lib
    assert load_answer(lib, tmp_path / 'stripped.so') == 42
    assert load_answer(wheel_files['pkg/_lib.so'], tmp_path / 'as.so') == 42


def test_strip_wheel_in_place(tmp_path, wheel_files):
    """``make_wheelhouse`` strips a wheel found in its own output folder
    onto itself: the result is the same as into another file."""
    src, other = tmp_path / 'pkg.whl', tmp_path / 'other.whl'
    write_wheel(src, wheel_files)
    wheels.strip_wheel(str(src), str(other))
    sizes = wheels.strip_wheel(str(src), str(src))
    assert sizes['after'] == osp.getsize(other) < sizes['before']
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(other) as b:
        assert {
            n: a.read(n)
            for n in a.namelist()
        } == {
            n: b.read(n)
            for n in b.namelist()
        }
    assert not list(tmp_path.glob('*.partial'))


def test_travel_bytes_counts_what_git_does_not_ignore(tmp_path):
    repo = tmp_path / 'repo'
    (repo / 'sub').mkdir(parents=True)

    def git(*args):
        subprocess.run(['git', *args],
                       cwd=repo,
                       check=True,
                       capture_output=True)

    git('init', '-q')
    (repo / 'sub' / 'tracked.txt').write_bytes(b't' * 100)
    (repo / 'gone.txt').write_bytes(b'g' * 1000)
    git('add', 'sub/tracked.txt', 'gone.txt')
    (repo / 'gone.txt').unlink()  # tracked, deleted: nothing travels
    (repo / 'untracked.txt').write_bytes(b'u' * 30)
    (repo / '.gitignore').write_text('*.ignored\n')
    (repo / 'big.ignored').write_bytes(b'i' * 10000)
    extra = tmp_path / 'extra'
    (extra / 'deep').mkdir(parents=True)
    (extra / 'a.whl').write_bytes(b'a' * 7)
    (extra / 'deep' / 'b.whl').write_bytes(b'b' * 11)
    here = 100 + 30 + len('*.ignored\n')
    assert wheels.travel_bytes(str(repo)) == here
    assert wheels.travel_bytes(str(repo), [str(extra)]) == here + 18


def test_wheel_names_and_versions():
    assert wheels.wheel_name_version(
        'model_index-0.1.11-py3-none-any.whl') == ('model-index', '0.1.11')
    assert wheels.wheel_name_version(
        '/x/PyYAML-6.0.2-cp312-cp312-manylinux_2_17_x86_64.whl') == ('pyyaml',
                                                                     '6.0.2')
    assert wheels.normalize('Zope.Interface__x') == 'zope-interface-x'


def test_find_mmcv_wheel_for_the_python(tmp_path):
    first, second = tmp_path / 'first', tmp_path / 'second'
    first.mkdir()
    second.mkdir()
    for name in ('mmcv-2.1.0-cp312-cp312-linux_x86_64.whl',
                 'mmcv-2.2.0-cp311-cp311-linux_x86_64.whl'):
        (second / name).write_bytes(b'')
    found = wheels.find_mmcv_wheel([str(first), str(second)], '3.12')
    assert found == str(second / 'mmcv-2.1.0-cp312-cp312-linux_x86_64.whl')
    assert wheels.find_mmcv_wheel([str(first), str(second)], '3.11') is None
    (first / 'mmcv-2.1.0-cp312-cp312-manylinux1_x86_64.whl').write_bytes(b'')
    assert wheels.find_mmcv_wheel([str(first), str(second)], '3.12') == str(
        first / 'mmcv-2.1.0-cp312-cp312-manylinux1_x86_64.whl')


def test_sha256_of_a_file(tmp_path):
    (tmp_path / 'f').write_bytes(b'mmakd' * 1000)
    assert wheels.sha256(str(tmp_path / 'f')) == hashlib.sha256(
        b'mmakd' * 1000).hexdigest()


# recipe ---------------------------------------------------------------------


def test_make_wheelhouse_keeps_wheels_and_strips_mmcv(tmp_path, wheel_files,
                                                      no_network, monkeypatch):
    """Every wheel of the closure is already in ``out``: nothing is fetched
    (pip could not: no index), mmcv comes stripped from its folder, a stale
    wheel goes."""
    monkeypatch.setenv('PIP_NO_INDEX', '1')
    out = tmp_path / 'wheels'
    out.mkdir()
    closure = wheels.stack_closure()
    assert closure, 'the stack needs distributions the GPU image lacks'
    digests = {}
    for name, version in closure:
        filename = f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
        with zipfile.ZipFile(out / filename, 'w') as zf:
            zf.writestr(f'{name}.txt', f'{name} {version}')
        digests[filename] = hashlib.sha256(
            (out / filename).read_bytes()).hexdigest()
    (out / 'old-0.1-py3-none-any.whl').write_bytes(b'stale')
    (out / 'notes.txt').write_text('not a wheel: left alone')
    # {cuda}, {py} and {torch} are filled in
    mmcv_folder = tmp_path / 'cuda13.0-py312-torch2.11.0'
    mmcv_folder.mkdir()
    source = mmcv_folder / 'mmcv-2.1.0-cp312-cp312-linux_x86_64.whl'
    write_wheel(source, wheel_files)
    echoed = []
    manifest = recipe.make_wheelhouse(
        str(out),
        str(tmp_path),
        python_version='3.12',
        torch='2.11.0',
        cuda='13.0',
        mmcv_folders=[
            str(tmp_path / 'none'),
            str(tmp_path / 'cuda{cuda}-py{py}-torch{torch}')
        ],
        command='make_cuda_wheels.py --probe',
        echo=echoed.append)

    with open(out / 'manifest.json') as f:
        assert json.load(f) == manifest
    assert (manifest['python'], manifest['torch'], manifest['cuda'],
            manifest['arch']) == ('3.12', '2.11.0', '13.0', '9.0')
    assert manifest['made_with']['command'] == 'make_cuda_wheels.py --probe'
    assert manifest['made_with']['python'] == sys.version.split()[0]
    assert manifest['assumed_present'] == sorted(wheels.GPU_IMAGE)
    mmcv_file = 'mmcv-2.1.0-cp312-cp312-linux_x86_64.whl'
    assert sorted(os.listdir(out)) == sorted(
        [*digests, mmcv_file, 'manifest.json', 'notes.txt'])
    entries = {w['file']: w for w in manifest['wheels']}
    assert [w['file'] for w in manifest['wheels']][-1] == mmcv_file
    assert len(entries) == len(manifest['wheels']) == len(closure) + 1
    for filename, (name, version) in zip(digests, closure):
        assert entries[filename] == dict(
            file=filename,
            name=name,
            version=version,
            bytes=osp.getsize(out / filename),
            sha256=digests[filename])
    assert sum('(kept)' in line for line in echoed) == len(closure)

    mmcv = entries[mmcv_file]
    assert (mmcv['name'], mmcv['version']) == ('mmcv', '2.1.0')
    assert mmcv['bytes'] == osp.getsize(out / mmcv_file)
    assert mmcv['sha256'] == hashlib.sha256(
        (out / mmcv_file).read_bytes()).hexdigest()
    assert mmcv['source'] == source.name
    assert mmcv['source_bytes'] == osp.getsize(source)
    assert mmcv['source_bytes'] > mmcv['bytes']
    with zipfile.ZipFile(out / mmcv_file) as zf:
        assert b'.debug_info' not in zf.read('pkg/_lib.so')
    assert manifest['total_bytes'] == sum(
        osp.getsize(out / f) for f in os.listdir(out) if f.endswith('.whl'))

    # --include names a distribution as pip would (any case, '_' or '.'):
    # it leaves the assumed-present list and its wheel is shipped.
    version = importlib.metadata.version('pyyaml')
    with zipfile.ZipFile(out / f'pyyaml-{version}-py3-none-any.whl',
                         'w') as zf:
        zf.writestr('yaml.txt', 'yaml')
    manifest = recipe.make_wheelhouse(
        str(out),
        str(tmp_path),
        mmcv_folders=[str(mmcv_folder)],
        include=['PyYAML'],
        echo=echoed.append)
    assert 'pyyaml' not in manifest['assumed_present']
    assert ('pyyaml', version) in {(w['name'], w['version'])
                                   for w in manifest['wheels']}


# checks ---------------------------------------------------------------------


def train_record(iteration: int,
                 loss: float = 1.5,
                 akd: bool = True,
                 **extra) -> dict:
    """A training record as the logger writes it, with two AKD losses of
    four Avatars (weights logged out of order)."""
    record = {
        'lr': 0.01,
        'loss': loss,
        'student.loss_cls': 0.5,
        'distill.loss_cwd_fpn0': 0.7,
        'distill.loss_cwd_fpn1': 0.3,
    }
    if akd:
        for loss_name, weights in (('cwd_fpn1', (0.1, 0.2, 0.3, 0.4)),
                                   ('cwd_fpn0', (0.4, 0.3, 0.2, 0.1))):
            record[f'distill.akd.{loss_name}.u'] = 0.01
            record[f'distill.akd.{loss_name}.wmax_over_wmin'] = 4.0
            for k in (3, 1, 0, 2):
                record[f'distill.akd.{loss_name}.w{k}'] = weights[k]
    record.update(extra, iter=iteration, step=iteration)
    return record


def write_work_dir(work_dir, records, wrapper: str = '') -> str:
    """A training work dir: ``<timestamp>/vis_data/scalars.json`` (with a
    validation record) and, given ``wrapper``, the dumped config."""
    vis = work_dir / '20260101_000000' / 'vis_data'
    vis.mkdir(parents=True)
    lines = [json.dumps(r) for r in records] + [
        json.dumps(dict(data_time=0.1, time=0.2, step=len(records)))
    ]
    (vis / 'scalars.json').write_text('\n'.join(lines) + '\n')
    if wrapper:
        (work_dir / 'demo_config.py').write_text(
            f'optim_wrapper = dict(type={wrapper!r}, dtype=\'float16\', '
            "optimizer=dict(type='SGD', lr=0.1))\n")
    return str(work_dir)


def test_avatar_weights_by_loss_in_order():
    assert avatar_weights(train_record(1)) == {
        'cwd_fpn0': [0.4, 0.3, 0.2, 0.1],
        'cwd_fpn1': [0.1, 0.2, 0.3, 0.4]
    }
    assert avatar_weights(train_record(1, akd=False)) == {}


def test_check_training_passes_and_names_the_weights(tmp_path):
    work_dir = write_work_dir(
        tmp_path,
        [train_record(1), train_record(2, loss=1.25)], 'AmpOptimWrapper')
    assert check_training(
        work_dir, 2, True, 'AmpOptimWrapper',
        'float16') == ('loss 1.25, 2 AKD losses, weights of cwd_fpn0: '
                       '0.400 0.300 0.200 0.100, AmpOptimWrapper '
                       'float16')
    assert check_training(work_dir, 2, False) == 'loss 1.25'


@pytest.mark.parametrize('records, iters, akd, reason', [
    ([
        train_record(1),
        train_record(2, **{'distill.loss_cwd_fpn0': float('nan')})
    ], 2, True, 'iteration 2: non-finite distill.loss_cwd_fpn0'),
    ([train_record(1, loss=float('inf'))
      ], 1, False, 'iteration 1: non-finite loss'),
    ([train_record(1), train_record(3)
      ], 3, True, r'iterations \[1, 3\], not 1..3'),
    ([train_record(1)], 2, True, r'iterations \[1\], not 1..2'),
    ([train_record(1, **{'distill.akd.cwd_fpn1.w3': 0.3})
      ], 1, True, r'Avatar weights of cwd_fpn1: \[0.1, 0.2, 0.3, 0.3\]'),
    ([train_record(1, **{'distill.akd.cwd_fpn0.w0': float('nan')})
      ], 1, True, 'Avatar weights of cwd_fpn0'),
    ([train_record(1, akd=False)], 1, True, 'no Avatar weights'),
])
def test_check_training_failures(tmp_path, records, iters, akd, reason):
    # NaN and Infinity written as the logger writes them (json.dumps)
    work_dir = write_work_dir(tmp_path, records)
    with pytest.raises(CheckFailed, match=reason):
        check_training(work_dir, iters, akd)


def test_check_training_amp_of_the_dumped_config(tmp_path):
    work_dir = write_work_dir(tmp_path, [train_record(1)], 'AmpOptimWrapper')
    with pytest.raises(
            CheckFailed,
            match=r'optim_wrapper is AmpOptimWrapper \(float16\), not '
            r'mmrazor.CPUAmpOptimWrapper \(bfloat16\)'):
        check_training(work_dir, 1, True, 'mmrazor.CPUAmpOptimWrapper',
                       'bfloat16')
    with pytest.raises(CheckFailed, match=r'not AmpOptimWrapper \(bfloat16'):
        check_training(work_dir, 1, True, 'AmpOptimWrapper', 'bfloat16')


def test_check_training_amp_without_a_dumped_config(tmp_path):
    work_dir = write_work_dir(tmp_path, [train_record(1)])  # no config
    with pytest.raises(CheckFailed, match='no dumped config'):
        check_training(work_dir, 1, True, 'AmpOptimWrapper', 'float16')


def test_check_training_without_a_log(tmp_path):
    with pytest.raises(FileNotFoundError, match='scalars.json'):
        check_training(str(tmp_path), 1, False)


@pytest.mark.parametrize('output, passed', [
    ('tests/test_device.py ....\n43 passed, 1 skipped in 6.8s\n', True),
    ('=== 12 passed, 1506 deselected, 2 warnings in 9.1s ===', True),
    ('1 failed, 3 passed in 2.0s', False),
    ('3 passed, 2 errors in 2.0s', False),
    ('1 error in 0.5s', False),
    ('1506 deselected, 1 error in 2s', False),
    ('1506 deselected in 2s', False),
    ('', False),
])
def test_check_pytest(output, passed):
    if passed:
        assert check_pytest(output) == output.strip().splitlines()[-1].strip(
            '= ')
    else:
        with pytest.raises(CheckFailed, match='pytest: '):
            check_pytest(output)


def test_check_test_reads_the_coco_map():
    output = ('12/05 22:37:25 - mmengine - INFO - Iter(test) [2/2] '
              'coco/bbox_mAP_50: 0.5000  coco/bbox_mAP: 0.1230  '
              'coco/bbox_mAP_75: 0.0100\n')
    assert check_test(output) == 'coco/bbox_mAP 0.1230'
    assert check_test('coco/bbox_mAP: -1.0000') == 'coco/bbox_mAP -1.0000'
    with pytest.raises(CheckFailed, match='no coco/bbox_mAP'):
        check_test('coco/bbox_mAP_50: 0.5000\n')


def write_json(path, payload) -> str:
    path.write_text(json.dumps(payload))
    return str(path)


def doctor_report(**changes) -> dict:
    losses = {
        'loss_cwd_fpn0': dict(value=1.0, grad_norm=0.5, akd=True),
        'loss_plain': dict(value=2.0, grad_norm=0.25, akd=False),
    }
    for name, entry in changes.items():
        losses[name] = dict(losses.get(name, {}), **entry)
    return dict(
        losses=losses,
        warnings=[
            dict(kind='teacher'),
            dict(kind='scale'),
            dict(kind='teacher')
        ])


def test_check_doctor(tmp_path):
    path = tmp_path / 'doctor.json'
    assert check_doctor(write_json(path, doctor_report())) == (
        '2 losses (1 with Avatars), warnings: scale, teacher')
    assert check_doctor(write_json(path, dict(
        doctor_report(),
        warnings=[]))) == ('2 losses (1 with Avatars), warnings: none')
    for report, reason in (
        (dict(losses={}), 'found no distillation loss'),
        (doctor_report(loss_plain=dict(value=float('nan'))),
         'loss_plain: value nan'),
        (doctor_report(loss_cwd_fpn0=dict(grad_norm=float('inf'))),
         'loss_cwd_fpn0: value 1.0, gradient norm inf'),
        (doctor_report(loss_cwd_fpn0=dict(akd=False)), 'no AKD loss'),
    ):
        with pytest.raises(CheckFailed, match=reason):
            check_doctor(write_json(path, report))


def bench_payload(**steps) -> dict:
    cases = dict(
        base=dict(step_ms_median=10.0, ratio_to_base=1.0),
        akd_k4=dict(step_ms_median=12.5, ratio_to_base=1.25))
    for name, step in steps.items():
        cases[name] = dict(step_ms_median=step)
    return dict(size=[128, 128], cases=cases)


def test_check_benchmark(tmp_path):
    path = tmp_path / 'bench.json'
    assert check_benchmark(
        write_json(path, bench_payload()),
        ['base', 'akd_k4']) == ('2 cases at 128x128, akd_k4/base step 1.250, '
                                'base 10.0 ms')
    for payload, reason in (
        (bench_payload(akd_k4=0.0), 'akd_k4: median step 0.0 ms'),
        (bench_payload(akd_k4=float('nan')), 'akd_k4: median step nan'),
        (bench_payload(base=-1.0), 'base: median step -1.0'),
    ):
        with pytest.raises(CheckFailed, match=reason):
            check_benchmark(write_json(path, payload), ['base', 'akd_k4'])
    with pytest.raises(CheckFailed, match='cases not measured: akd_k8, ours'):
        check_benchmark(
            write_json(path, bench_payload()),
            ['base', 'akd_k4', 'akd_k8', 'ours'])


ENV_INFO = dict(
    python='3.12.3',
    torch='2.11.0+cu130',
    torch_cuda='13.0',
    cuda_available=True,
    gpu='NVIDIA H100 80GB HBM3',
    mmcv='2.1.0',
    mmcv_ops_cuda='13.0',
    mmakd='0.1.0')


def test_check_env():
    assert check_env(ENV_INFO, 'cuda') == (
        'torch 2.11.0+cu130 (CUDA 13.0, NVIDIA H100 80GB HBM3), mmcv 2.1.0 '
        'ops CUDA 13.0, mmakd 0.1.0')
    cpu = dict(
        ENV_INFO,
        cuda_available=False,
        gpu=None,
        mmcv_ops_cuda='not available')
    assert check_env(cpu, 'cpu') == (
        'torch 2.11.0+cu130 (CUDA 13.0), mmcv 2.1.0 ops CUDA not available, '
        'mmakd 0.1.0')
    with pytest.raises(CheckFailed, match='is_available'):
        check_env(dict(ENV_INFO, cuda_available=False), 'cuda')
    with pytest.raises(CheckFailed, match='compiled without CUDA'):
        check_env(dict(ENV_INFO, mmcv_ops_cuda='not available'), 'cuda')


# run ------------------------------------------------------------------------


def step(name: str, code: str = '', **kwargs) -> Step:
    """A step that runs ``code`` (by default, prints ``hello <name>``);
    its check returns the last line of the output."""
    kwargs.setdefault('check', lambda out: out.strip().splitlines()[-1])
    return Step(name, f'the step {name}',
                ['-c', code or f"print('hello {name}')"], **kwargs)


def exits(name: str, status: int, **kwargs) -> Step:
    return step(name, f"import sys; print('boom {name}'); sys.exit({status})",
                **kwargs)


INSTALL = dict(
    name='install',
    what='install what is missing',
    status='ok',
    seconds=1.5,
    detail='nothing missing')


def results(summary) -> list:
    return [(s['name'], s['status'], s['detail']) for s in summary['steps']]


def test_run_steps_all_ok(tmp_path):
    out, repo = tmp_path / 'out', tmp_path / 'repo'
    repo.mkdir()
    where = ('import os; print(os.getcwd()); '
             "print(os.environ['PYTHONUNBUFFERED']); "
             "print(os.environ['PYTHONPATH'].split(os.pathsep)[0])")
    echoed = []
    summary = run_steps([step('first'), step('where', where)],
                        str(out),
                        str(repo),
                        header=dict(device='cpu', command='probe'),
                        before=[INSTALL],
                        echo=echoed.append)
    assert summary['ok'] is True
    assert (summary['device'], summary['command']) == ('cpu', 'probe')
    assert results(summary) == [('install', 'ok', 'nothing missing'),
                                ('first', 'ok', 'hello first'),
                                ('where', 'ok', str(repo))]
    first = summary['steps'][1]
    assert first['what'] == 'the step first'
    assert first['command'] == "python -c print('hello first')"
    assert first['log'] == osp.join('logs', 'first.log')
    with open(out / 'summary.json') as f:
        assert json.load(f) == summary
    lines = (out / 'summary.txt').read_text().splitlines()
    assert lines == echoed
    assert len(lines) == 3
    assert lines[0] == summary_line(1, 3, INSTALL)
    for index, result in enumerate(summary['steps'], 1):
        assert lines[index - 1] == summary_line(index, 3, result)
    assert lines[1].startswith('[cuda-check]  2/3 first ')
    log = (out / 'logs' / 'first.log').read_text().splitlines()
    assert log == ["$ python -c print('hello first')", 'hello first']
    where_log = (out / 'logs' / 'where.log').read_text()
    assert f'\n{repo}\n1\n{repo}\n' in where_log


def test_run_steps_stops_at_the_first_failure(tmp_path):
    out = tmp_path / 'out'
    echoed = []
    summary = run_steps(
        [step('a'),
         exits('b', 3),
         step('c'),
         step('d', requires=('b', ))],
        str(out),
        str(tmp_path),
        echo=echoed.append)
    assert summary['ok'] is False
    assert results(summary) == [('a', 'ok', 'hello a'),
                                ('b', 'FAILED', 'exit status 3'),
                                ('c', 'skipped', 'after a failure'),
                                ('d', 'skipped', 'needs b')]
    assert summary['steps'][2]['seconds'] is None
    assert not (out / 'logs' / 'c.log').exists()
    assert 'boom b' in (out / 'logs' / 'b.log').read_text()
    failure = next(e for e in echoed if 'b failed' in e)
    assert 'the step b' in failure and 'boom b' in failure
    with open(out / 'summary.json') as f:
        assert json.load(f)['ok'] is False
    lines = (out / 'summary.txt').read_text().splitlines()
    assert [line.split()[2:4] for line in lines] == [['a', 'ok'],
                                                     ['b', 'FAILED'],
                                                     ['c', 'skipped'],
                                                     ['d', 'skipped']]


def test_run_steps_keep_going_skips_what_needs_the_failure(tmp_path):
    summary = run_steps([
        exits('b', 1),
        step('c'),
        step('d', requires=('b', )),
        step('e', requires=('d', )),
        step('f', requires=('c', ))
    ],
                        str(tmp_path / 'out'),
                        str(tmp_path),
                        keep_going=True,
                        echo=lambda line: None)
    assert summary['ok'] is False
    assert results(summary) == [('b', 'FAILED', 'exit status 1'),
                                ('c', 'ok', 'hello c'),
                                ('d', 'skipped', 'needs b'),
                                ('e', 'skipped', 'needs d'),
                                ('f', 'ok', 'hello f')]


def test_run_steps_check_failures_and_timeouts(tmp_path):

    def no_map(out):
        raise CheckFailed(f'no coco/bbox_mAP in {out.splitlines()[-1]}')

    summary = run_steps([
        step('checked', check=no_map),
        step('missing', check=lambda out: open('/no/such/file.json')),
        step('slow', 'import time; time.sleep(5)', timeout=1)
    ],
                        str(tmp_path / 'out'),
                        str(tmp_path),
                        keep_going=True,
                        echo=lambda line: None)
    assert summary['ok'] is False
    assert results(summary)[0] == ('checked', 'FAILED',
                                   'CheckFailed: no coco/bbox_mAP in '
                                   'hello checked')
    assert results(summary)[1][:2] == ('missing', 'FAILED')
    assert results(summary)[1][2].startswith('FileNotFoundError: ')
    assert results(summary)[2] == ('slow', 'FAILED', 'timed out after 1 s')


def test_summary_line_format():
    result = dict(name='det_akd', status='ok', seconds=14.21, detail='loss 1')
    assert summary_line(3, 13,
                        result) == ('[cuda-check]  3/13 det_akd' + ' ' * 10 +
                                    'ok' + ' ' * 9 + '14.2 s  loss 1')
    skipped = dict(result, status='skipped', seconds=None, detail='needs b')
    assert summary_line(12, 13,
                        skipped) == ('[cuda-check] 12/13 det_akd' + ' ' * 10 +
                                     'skipped' + ' ' * 10 + '  needs b')


# steps ----------------------------------------------------------------------


def argv_after(argv, flag: str):
    return argv[argv.index(flag) + 1]


@pytest.mark.parametrize('target', ['cpu', 'cuda'])
def test_plan_steps(tmp_path, target):
    out, work = str(tmp_path / 'out'), str(tmp_path / 'work')
    plan = plan_steps(target, out, work)
    assert [s.name for s in plan] == STEP_NAMES
    steps = {s.name: s for s in plan}
    earlier = set()
    for s in plan:
        assert set(s.requires) <= earlier, s.name
        earlier.add(s.name)
        for arg in s.argv:
            if arg.endswith('.py'):
                assert osp.isfile(osp.join(REPO, arg)), (s.name, arg)
    assert steps['det_akd'].requires == ('det_teacher', )
    assert steps['seg_akd_amp'].requires == ('seg_teacher', )
    assert steps['det_teacher'].requires == ('data', )
    assert steps['env'].argv[-1] == osp.join(out, 'env.json')
    for name in ('det_akd_amp', 'seg_akd_amp'):
        assert '--amp' in steps[name].argv
        assert '--amp' not in steps[name[:-4]].argv
        assert argv_after(steps[name].argv,
                          '--work-dir') == osp.join(work, name)
    for name in ('unit_tests', 'doctor', 'bench_retinanet', 'bench_pspnet'):
        assert argv_after(steps[name].argv, '--device') == target
    assert argv_after(steps['unit_tests'].argv,
                      '--junitxml') == osp.join(out, 'unit_tests.xml')
    for name in ('bench_retinanet', 'bench_pspnet'):
        argv = steps[name].argv
        assert argv[argv.index('--cases') + 1:] == list(CASES)
        assert argv_after(argv, '--json') == osp.join(out, f'{name}.json')
        if target == 'cpu':
            start = argv.index('--size')
            assert tuple(argv[start:start + len(BENCH_TINY)]) == BENCH_TINY
        else:
            assert '--size' not in argv and '--iters' not in argv


@pytest.mark.parametrize('target, wrapper, dtype', [
    ('cuda', 'AmpOptimWrapper', 'float16'),
    ('cpu', 'mmrazor.CPUAmpOptimWrapper', 'bfloat16'),
])
def test_plan_steps_checks_read_their_own_files(tmp_path, target, wrapper,
                                                dtype):
    """The checks of the planned steps: each reads its own work dir or
    JSON, and the --amp steps want the device's mixed precision."""
    out, work = tmp_path / 'out', tmp_path / 'work'
    out.mkdir()
    steps = {s.name: s for s in plan_steps(target, str(out), str(work))}
    amp_dir = work / 'det_akd_amp'
    amp_dir.mkdir(parents=True)
    write_work_dir(amp_dir, [train_record(1)], 'AmpOptimWrapper')
    if target == 'cuda':
        assert steps['det_akd_amp'].check('').endswith(
            ', AmpOptimWrapper float16')
    else:
        with pytest.raises(CheckFailed, match=f'not {wrapper} \\({dtype}'):
            steps['det_akd_amp'].check('')
    # det_akd reads its own work dir, which is not there
    with pytest.raises(FileNotFoundError, match='/det_akd$'):
        steps['det_akd'].check('')

    write_json(out / 'env.json', dict(ENV_INFO, cuda_available=False))
    if target == 'cuda':
        with pytest.raises(CheckFailed, match='is_available'):
            steps['env'].check('')
    else:
        assert steps['env'].check('').startswith('torch 2.11.0+cu130')

    write_json(
        out / 'bench_retinanet.json',
        dict(
            size=[128, 128],
            cases={
                name: dict(step_ms_median=1.0, ratio_to_base=1.0)
                for name in CASES
            }))
    assert steps['bench_retinanet'].check('').startswith(
        f'{len(CASES)} cases at 128x128')
    with pytest.raises(FileNotFoundError, match='bench_pspnet.json'):
        steps['bench_pspnet'].check('')
    assert steps['unit_tests'].check('3 passed in 1s') == '3 passed in 1s'
