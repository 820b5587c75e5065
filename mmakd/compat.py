# Copyright (c) mmakd contributors. All rights reserved.
"""Run MMRazor 1.0.0 and MMEngine 0.10.x on modern PyTorch.

``import mmakd`` calls :func:`apply` before anything imports
``mmrazor.models``. It repairs two breakages, each found by probing for what
is missing or refused, never by comparing version numbers, so the same code
serves every PyTorch from 2.1 on (tested: 2.13 and 2.14) and changes
nothing where nothing is broken.

1. **MMRazor's import.** ``mmrazor.structures.quantization`` builds its
   quantization backend configs at import time from ``torch.ao`` internals
   that PyTorch 2.x renamed (``reverse2``, ``reverse3``,
   ``reverse_sequential_wrapper2``) or removed
   (``BackendPatternConfig._set_overwrite_output_fake_quantize``), and it
   relies on ``torch.ao.quantization.backend_config.utils`` having been
   imported by someone else. As a result ``import mmrazor.models`` fails and
   takes the whole distillation stack down with it. The fix:

   * back-port the three fuser helpers with their PyTorch 1.13 semantics,
     only where they are absent;
   * import the ``backend_config.utils`` submodule where it is not loaded;
   * guard the one module that builds the backend configs at import
     (``...backend_config.mapping``): if building fails, its
     ``BackendConfigs`` becomes a lazy mapping that builds a backend on first
     use and, when that still fails, raises
     :class:`QuantizationUnavailableError` naming the backend, the PyTorch
     version and the original error. Distillation never touches it.

2. **Checkpoints under ``weights_only``.** Since PyTorch 2.6 ``torch.load``
   defaults to ``weights_only=True``; MMEngine calls it without the argument,
   so its own runner checkpoints (NumPy scalars and arrays in ``meta`` and
   the message hub, ``HistoryBuffer`` objects) and model-zoo checkpoints
   with NumPy metadata are refused. The fix allow-lists exactly those types
   with :func:`torch.serialization.add_safe_globals`. ``weights_only`` stays
   on: a pickle that would run code (``os.system``, ``eval``, arbitrary
   ``getattr``) is still refused with PyTorch's ``UnpicklingError``. The
   ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` switch is never touched.
   ``add_safe_globals`` is process-wide: after ``import mmakd`` every
   ``torch.load`` of the process (not only MMEngine's) accepts these NumPy
   types, ``HistoryBuffer`` and the restricted ``getattr``, and nothing
   else. If the fix itself fails on a future PyTorch, ``import mmakd``
   warns (naming what failed, see :attr:`CompatReport.checkpoint_error`)
   instead of raising, so configs that load no checkpoint keep working;
   loading one then fails with PyTorch's ``UnpicklingError``, to which
   mmakd's teacher-checkpoint loader adds that diagnosis.
"""
import importlib
import importlib.abc
import importlib.machinery
import io
import pickle
import sys
import types
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional

import torch

__all__ = [
    'QuantizationUnavailableError', 'CompatReport', 'apply',
    'history_buffer_getattr'
]

#: MMRazor module that builds every quantization backend config at import.
BACKEND_MAPPING_MODULE = \
    'mmrazor.structures.quantization.backend_config.mapping'
#: ``torch.ao`` module whose fuser helpers PyTorch 2.x renamed.
FUSER_MODULE = 'torch.ao.quantization.fuser_method_mappings'
#: ``torch.ao`` package whose ``utils`` submodule PyTorch uses unimported.
BACKEND_CONFIG_PACKAGE = 'torch.ao.quantization.backend_config'


class QuantizationUnavailableError(RuntimeError):
    """MMRazor 1.0.0's quantization cannot run on the installed PyTorch."""


@dataclass
class CompatReport:
    """What :func:`apply` changed; empty lists mean nothing was needed.

    Attributes:
        fuser_helpers (list[str]): Fuser helpers back-ported into
            ``torch.ao.quantization.fuser_method_mappings``.
        imported_submodules (list[str]): ``torch.ao`` submodules imported
            because PyTorch uses them without importing them.
        guarded_modules (list[str]): MMRazor modules imported under a guard
            that runs their own code and only steps in if it fails.
        deferred_errors (dict[str, str]): Guarded modules whose import did
            fail, with the error now deferred to first use.
        safe_globals (list[str]): Names allow-listed for
            ``torch.load(weights_only=True)``.
        checkpoint_error (str, optional): Why MMEngine checkpoints still do
            not load under ``weights_only`` after the fix (a PyTorch this
            layer does not know); None when they load.
    """
    fuser_helpers: List[str] = field(default_factory=list)
    imported_submodules: List[str] = field(default_factory=list)
    guarded_modules: List[str] = field(default_factory=list)
    deferred_errors: Dict[str, str] = field(default_factory=dict)
    safe_globals: List[str] = field(default_factory=list)
    checkpoint_error: Optional[str] = None

    @property
    def changed(self) -> bool:
        """Whether anything was patched (a guard that ran its module's own
        code successfully changes nothing)."""
        return bool(self.fuser_helpers or self.imported_submodules
                    or self.deferred_errors or self.safe_globals)


# ---------------------------------------------------------------------------
# 1. MMRazor quantization import
# ---------------------------------------------------------------------------
def _reverse2(fuser: Callable) -> Callable:
    """PyTorch 1.13 ``reverse2``: call ``fuser`` with two modules swapped."""

    def reversed_fuser(is_qat: bool, x: Any, y: Any) -> Any:
        return fuser(is_qat, y, x)

    return reversed_fuser


def _reverse3(fuser: Callable) -> Callable:
    """PyTorch 1.13 ``reverse3``: reverse a ``(x, (y, z))`` pattern."""

    def reversed_fuser(is_qat: bool, x: Any, w: Any) -> Any:
        y, z = w
        return fuser(is_qat, z, y, x)

    return reversed_fuser


def _reverse_sequential_wrapper2(sequential: Callable) -> Callable:
    """PyTorch 1.13 ``reverse_sequential_wrapper2``."""

    def fuser_method(is_qat: bool, x: Any, y: Any) -> Any:
        return sequential(y, x)

    return fuser_method


_FUSER_HELPERS: Dict[str, Callable] = {
    'reverse2': _reverse2,
    'reverse3': _reverse3,
    'reverse_sequential_wrapper2': _reverse_sequential_wrapper2,
}


def _import_or_none(name: str) -> Optional[types.ModuleType]:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _backport_fuser_helpers(report: CompatReport) -> None:
    fuser_module = _import_or_none(FUSER_MODULE)
    if fuser_module is None:  # no torch.ao: MMRazor uses its placeholders
        return
    for name, helper in _FUSER_HELPERS.items():
        if not hasattr(fuser_module, name):
            setattr(fuser_module, name, helper)
            report.fuser_helpers.append(name)


def _import_backend_config_utils(report: CompatReport) -> None:
    package = _import_or_none(BACKEND_CONFIG_PACKAGE)
    if package is None or hasattr(package, 'utils'):
        return
    if _import_or_none(f'{BACKEND_CONFIG_PACKAGE}.utils') is not None:
        report.imported_submodules.append(f'{BACKEND_CONFIG_PACKAGE}.utils')


class _LazyBackendConfigs(Mapping):
    """Stand-in for MMRazor's ``BackendConfigs`` dict.

    Each backend is built on first access by MMRazor's own
    ``get_<backend>_backend_config``; a failure raises
    :class:`QuantizationUnavailableError` instead of breaking the import.
    """

    def __init__(self, builders: Dict[str, Callable],
                 import_error: BaseException) -> None:
        self._builders = builders
        self._import_error = import_error
        self._built: Dict[str, Any] = {}

    def __getitem__(self, backend: str) -> Any:
        if backend not in self._builders:
            raise KeyError(backend)
        if backend not in self._built:
            try:
                self._built[backend] = self._builders[backend]()
            except Exception as err:
                raise QuantizationUnavailableError(
                    f"MMRazor 1.0.0's quantization backend '{backend}' "
                    f'cannot be built on torch {torch.__version__}: '
                    f'{type(err).__name__}: {err}. mmakd makes MMRazor\'s '
                    'distillation stack run on this PyTorch; MMRazor '
                    'quantization needs the PyTorch it was written for '
                    '(1.13).') from err
        return self._built[backend]

    def __iter__(self) -> Iterator[str]:
        return iter(self._builders)

    def __len__(self) -> int:
        return len(self._builders)

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(backends={list(self._builders)}, '
                f'import_error={self._import_error!r})')


def _defer_backend_configs(module: types.ModuleType,
                           error: BaseException) -> None:
    """Fallback for the mapping module when its import-time build fails."""
    if _REPORT is not None:
        _REPORT.deferred_errors[module.__name__] = \
            f'{type(error).__name__}: {error}'
    suffix = '_backend_config'
    builders = {
        name[len('get_'):-len(suffix)]: obj
        for name, obj in vars(module).items()
        if name.startswith('get_') and name.endswith(suffix) and callable(obj)
    }
    module.BackendConfigs = _LazyBackendConfigs(builders, error)


class _GuardedLoader(importlib.abc.Loader):
    """Run a module's own code; on failure, hand it to ``fallback``."""

    def __init__(self, loader: importlib.abc.Loader,
                 fallback: Callable[[types.ModuleType, BaseException], None]):
        self._loader = loader
        self._fallback = fallback

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        try:
            self._loader.exec_module(module)
        except Exception as err:  # noqa: B902 - any import-time failure
            self._fallback(module, err)


class _GuardFinder(importlib.abc.MetaPathFinder):
    """One-shot finder that wraps the loader of a single module."""

    def __init__(self, fullname: str,
                 fallback: Callable[[types.ModuleType, BaseException], None]):
        self.fullname = fullname
        self.fallback = fallback

    def find_spec(self, fullname: str, path: Any = None, target: Any = None):
        if fullname != self.fullname:
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _GuardedLoader(spec.loader, self.fallback)
        return spec


def _guard_backend_mapping(report: CompatReport) -> None:
    if BACKEND_MAPPING_MODULE in sys.modules:
        return  # already imported (successfully, or the caller saw it fail)
    if importlib.machinery.PathFinder.find_spec('mmrazor') is None:
        return
    if any(
            isinstance(f, _GuardFinder)
            and f.fullname == BACKEND_MAPPING_MODULE for f in sys.meta_path):
        return
    sys.meta_path.insert(
        0, _GuardFinder(BACKEND_MAPPING_MODULE, _defer_backend_configs))
    report.guarded_modules.append(BACKEND_MAPPING_MODULE)


# ---------------------------------------------------------------------------
# 2. Checkpoints under weights_only=True
# ---------------------------------------------------------------------------
def history_buffer_getattr(obj: Any, name: str) -> Any:
    """The only ``getattr`` a checkpoint may call: HistoryBuffer statistics.

    ``mmengine.logging.HistoryBuffer`` pickles its statistics methods as
    ``getattr(HistoryBuffer, 'mean')`` (pickle protocol 2). Allowing the real
    ``builtins.getattr`` would let a checkpoint fetch any attribute of any
    object it can build; this replacement accepts only the statistics
    methods (``min``, ``max``, ``current``, ``mean`` and any registered with
    ``HistoryBuffer.register_statistics``) defined on ``HistoryBuffer``.

    Args:
        obj (Any): The object the checkpoint looks the attribute up on.
        name (str): The attribute name.

    Returns:
        Callable: The statistics method.

    Raises:
        pickle.UnpicklingError: For any other object or attribute.
    """
    from mmengine.logging import HistoryBuffer
    statistics = {'min', 'max', 'current', 'mean'}
    statistics.update(HistoryBuffer._statistics_methods)
    attr = vars(HistoryBuffer).get(name) if obj is HistoryBuffer else None
    if not isinstance(attr, types.FunctionType) or name not in statistics:
        raise pickle.UnpicklingError(
            f'mmakd refused getattr({obj!r}, {name!r}) in a weights_only '
            'checkpoint: only the statistics methods of '
            'mmengine.logging.HistoryBuffer may be looked up.')
    return attr


def _numpy_safe_globals() -> List[Any]:
    import numpy as np
    multiarray = _import_or_none('numpy._core.multiarray') or \
        importlib.import_module('numpy.core.multiarray')
    entries: List[Any] = [np.ndarray, np.dtype]
    # Pickles name these by the module path of the NumPy that wrote them.
    for module_path in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        entries.append(
            (multiarray._reconstruct, f'{module_path}._reconstruct'))
        entries.append((multiarray.scalar, f'{module_path}.scalar'))
    # ``np.dtype(...)`` rebuilds an instance of a per-type dtype class
    # (``numpy.dtypes.Float64DType``...), which unpickling then sets state on.
    entries.extend({type(np.dtype(code)) for code in np.typecodes['All']})
    return entries


def _safe_globals() -> List[Any]:
    from mmengine.logging import HistoryBuffer
    return _numpy_safe_globals() + [
        HistoryBuffer, (history_buffer_getattr, 'builtins.getattr')
    ]


def _mmengine_like_checkpoint() -> bytes:
    """A tiny checkpoint holding what MMEngine's runner writes."""
    import numpy as np
    from mmengine.logging import HistoryBuffer
    buffer = HistoryBuffer()
    buffer.update(1.0)
    payload = {
        'meta': {
            'iter': 1,
            'best_score': np.float64(0.5),
            'seed': np.int64(0)
        },
        'message_hub': {
            'log_scalars': {
                'train/loss': buffer
            },
            'runtime_info': {
                'eta': np.float64(1.0)
            }
        },
        'state_dict': {
            'w': torch.zeros(1)
        },
    }
    stream = io.BytesIO()
    torch.save(payload, stream)
    return stream.getvalue()


def _default_load_refuses(data: bytes) -> Optional[BaseException]:
    """Load ``data`` the way MMEngine does (no ``weights_only``)."""
    try:
        torch.load(io.BytesIO(data), map_location='cpu')
    except pickle.UnpicklingError as err:
        return err
    return None


def _allow_mmengine_checkpoints(report: CompatReport) -> None:
    """Allow-list what MMEngine checkpoints hold, if ``torch.load`` refuses
    them; warn (never raise) if that does not suffice."""
    try:
        probe = _mmengine_like_checkpoint()
        if _default_load_refuses(probe) is None:
            return  # weights_only is off by default, or already allow-listed
        entries = _safe_globals()
        torch.serialization.add_safe_globals(entries)
        report.safe_globals.extend(entry[1] if isinstance(entry, tuple) else
                                   f'{entry.__module__}.{entry.__qualname__}'
                                   for entry in entries)
        still_refused = _default_load_refuses(probe)
        problem = None if still_refused is None else \
            f'{type(still_refused).__name__}: {still_refused}'
    except Exception as err:  # noqa: B902 - a torch/NumPy we do not know
        problem = f'the probe itself failed: {type(err).__name__}: {err}'
    if problem is None:
        return
    report.checkpoint_error = (
        f'mmakd could not make MMEngine checkpoints loadable with '
        f'torch.load(weights_only=True) on torch {torch.__version__} '
        f'({problem}). Runner checkpoints and model-zoo checkpoints with '
        'NumPy metadata will be refused; please report this with '
        '`python -c "import torch, numpy; print(torch.__version__, '
        'numpy.__version__)"`.')
    warnings.warn(report.checkpoint_error, RuntimeWarning, stacklevel=2)


_REPORT: Optional[CompatReport] = None


def apply() -> CompatReport:
    """Apply every fix that this environment needs; idempotent.

    Returns:
        CompatReport: What was changed by the first call (later calls return
        the same report and change nothing).
    """
    global _REPORT
    if _REPORT is None:
        report = CompatReport()
        _backport_fuser_helpers(report)
        _import_backend_config_utils(report)
        _guard_backend_mapping(report)
        _allow_mmengine_checkpoints(report)
        _REPORT = report
    return _REPORT
