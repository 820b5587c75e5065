# Copyright (c) mmakd contributors. All rights reserved.
"""Wall time and transient peak memory of one benchmark step.

Peak memory is the step's transient peak above the memory held before it
(activations, gradients, optimizer temporaries; the models' weights are
common to all cases and left out): on CUDA from
``torch.cuda.max_memory_allocated``; on CPU by sampling the process's
resident set every 0.5 ms during one step of each case, after telling
glibc to ``mmap`` every allocation of 64 KiB or more, so that a freed
tensor leaves the resident set at once.
"""
import ctypes
import os
import threading
import time
from typing import Callable, Optional

import torch

_PAGE = os.sysconf('SC_PAGE_SIZE') if hasattr(os, 'sysconf') else 4096


def _sync(device: str) -> None:
    """Wait for the device's queued work (CUDA only)."""
    if device == 'cuda':
        torch.cuda.synchronize()


def _timed(fn: Callable, device: str) -> float:
    """Milliseconds of one call of ``fn``, the device synchronised around
    it."""
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return (time.perf_counter() - start) * 1000


def _rss_bytes() -> int:
    """The process's resident-set size in bytes (Linux ``/proc``)."""
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * _PAGE


def _libc() -> Optional[ctypes.CDLL]:
    """glibc, or None where it cannot be loaded."""
    try:
        return ctypes.CDLL('libc.so.6')
    except OSError:
        return None


def _mmap_large_allocations() -> bool:
    """Make glibc return freed blocks >= 64 KiB to the OS at once."""
    libc = _libc()
    try:
        return bool(libc and libc.mallopt(-3, 64 * 1024))  # M_MMAP_THRESHOLD
    except AttributeError:
        return False


def _trim() -> None:
    """Give the free memory glibc still holds back to the OS."""
    libc = _libc()
    if libc is not None and hasattr(libc, 'malloc_trim'):
        libc.malloc_trim(0)


class _PeakSampler:
    """Highest resident-set size seen while the block runs.

    Args:
        interval (float): Seconds between two samples. Defaults to 0.0005.
    """

    def __init__(self, interval: float = 0.0005) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(self.interval)

    def __enter__(self) -> '_PeakSampler':
        self.peak = _rss_bytes()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())


def step_peak_mb(step: Callable, device: str) -> float:
    """Transient memory of one call of ``step`` above what it started with.

    Args:
        step (Callable): The step, called once without arguments.
        device (str): ``'cpu'`` (resident-set sampling) or ``'cuda'``
            (``torch.cuda.max_memory_allocated``).

    Returns:
        float: The peak above the memory held before the call, in MiB.
    """
    if device == 'cuda':
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    _trim()
    before = _rss_bytes()
    with _PeakSampler() as sampler:
        step()
    return (sampler.peak - before) / 2**20
