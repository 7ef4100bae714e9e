"""Several cached training runs at once on a multi-core CPU: one forked process per run, one thread each.

A small network on a few cores uses them poorly from one process: on this project's 2-core machine the
smoke U-Net (12×12, batch 64) trains at 45 ms a step on two threads but at 60 ms on one, so two runs side
by side, one thread each, finish in 60 ms a step pair against 90 ms one after the other; the 2-D MLP of
notebook 01 gains nothing from a second thread and halves its wall time this way.

:func:`cached_train_many` trains the runs that :func:`~gdmkit.companion.cache.cached_train` does not find
in its cache in forked child processes (``workers`` at a time, longest first), each writing its run into
the cache as ``cached_train`` does, then loads every run in the calling process. Each child trains on
one thread: a forked child cannot reuse the parent's OpenMP pool (with GNU OpenMP it hangs), and one
thread per core is what these networks use best. The key of each run records ``cpu_threads: 1``, so a
run trained here is the run that ``cached_train`` trains on one thread — the same bytes, whichever
process trained it. A child that fails leaves its checkpoint (if any) in place; its run is trained
again in the calling process, where the error, if it recurs, is raised as usual.
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .cache import cached_train, default_progress, is_cached, trains_on_cpu

__all__ = ["TrainJob", "cached_train_many"]

_POLL_S = 0.2  # how often the parent looks for finished children


@dataclass
class TrainJob:
    """The arguments of one :func:`~gdmkit.companion.cache.cached_train` call.

    Attributes
    ----------
    loss : paths.Loss
        ``DiagonalPath.loss_fn(...)`` (with ``to_config()``).
    net : nn.Module
        The network in its initial state (with ``to_config()``).
    data : Tensor, shape (N, *event_shape)
    cfg : train.TrainConfig
    """

    loss: Any
    net: nn.Module
    data: Tensor
    cfg: Any


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _child(job: TrainJob, cache_dir, device) -> None:
    """Runs in the forked process: train one job into the cache, then leave without cleanup."""
    code = 1
    try:
        torch.set_num_threads(1)
        cached_train(job.loss, job.net, job.data, job.cfg, cache_dir=cache_dir, device=device, progress=False)
        code = 0
    except BaseException:  # noqa: BLE001 - reported on the terminal; the parent trains the job again
        try:
            sys.__stderr__.write("cached_train_many: a worker failed (the run is trained again in the "
                                 "calling process):\n" + traceback.format_exc())
            sys.__stderr__.flush()
        except Exception:  # noqa: BLE001
            pass
    finally:
        os._exit(code)  # never run the parent's atexit handlers or flush its (kernel's) streams


def _say(stream, text: str) -> None:
    if stream:
        stream.write(text + "\n")
        stream.flush()


def _fork_all(jobs: Sequence[TrainJob], order: Sequence[int], workers: int, cache_dir, device,
              stream) -> list[int]:
    """Train ``jobs[i]`` for i in ``order`` in forked children, ``workers`` at a time; return the failed i."""
    queue, active, failed = list(order), {}, []
    t0 = time.perf_counter()
    try:
        while queue or active:
            while queue and len(active) < workers:
                i = queue.pop(0)
                pid = os.fork()
                if pid == 0:  # the child
                    _child(jobs[i], cache_dir, device)
                active[pid] = (i, time.perf_counter())
            time.sleep(_POLL_S)
            for pid in list(active):
                done, status = os.waitpid(pid, os.WNOHANG)
                if done == 0:
                    continue
                i, start = active.pop(pid)
                code = os.waitstatus_to_exitcode(status)
                if code != 0:
                    failed.append(i)
                _say(stream, f"cached_train_many: run {i + 1} of {len(jobs)} ({jobs[i].cfg.steps} steps) "
                             f"{'finished' if code == 0 else f'failed (exit {code})'} after "
                             f"{time.perf_counter() - start:.0f} s ({time.perf_counter() - t0:.0f} s in all)")
    except BaseException:  # KeyboardInterrupt or an error here: stop the children, keep their checkpoints
        for pid in active:
            with contextlib.suppress(OSError):
                os.kill(pid, 15)
        for pid in active:
            with contextlib.suppress(OSError):
                os.waitpid(pid, 0)
        raise
    return failed


def cached_train_many(jobs: Iterable[TrainJob], *, workers: int = 1,
                      cache_dir: str | os.PathLike | None = "data/cache/models", device=None,
                      progress=None) -> list:
    """:func:`~gdmkit.companion.cache.cached_train` for each job, ``workers`` runs at a time on the CPU.

    Parameters
    ----------
    jobs : iterable of TrainJob
    workers : int
        1 (default): the jobs train one after the other in this process, on torch's current thread
        count — exactly ``[cached_train(...) for job in jobs]``. ``workers > 1`` on the CPU: the runs
        not in the cache train in forked child processes, ``workers`` at a time, one thread each (see
        the module docstring); every run, trained or not, is then loaded here with keys taken on one
        thread. On CUDA, or with ``cache_dir=None``, the jobs train one after the other whatever
        ``workers`` says (a GPU is not shared that way; without a cache a child could not hand its
        weights back).
    cache_dir, device, progress
        As :func:`~gdmkit.companion.cache.cached_train`; ``progress`` also gets one line per finished
        child.

    Returns
    -------
    list of TrainResult
        In the order of ``jobs``.

    Raises
    ------
    ValueError
        When ``workers`` is not a positive integer, or a job is not a :class:`TrainJob`.
    """
    jobs = list(jobs)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer (how many runs train at once), got {workers!r}; "
                         "use 1 to train one after the other, or the number of CPU cores")
    for j in jobs:
        if not isinstance(j, TrainJob):
            raise ValueError(f"cached_train_many takes TrainJob(loss, net, data, cfg) items, got "
                             f"{type(j).__name__}; wrap each cached_train call's arguments in a TrainJob")
    progress = default_progress(progress)
    stream = progress if progress and not isinstance(progress, bool) else (sys.__stderr__ if progress else None)
    kwargs = {"cache_dir": cache_dir, "device": device, "progress": progress}
    if workers == 1 or cache_dir is None or not trains_on_cpu(device) or not hasattr(os, "fork"):
        return [cached_train(j.loss, j.net, j.data, j.cfg, **kwargs) for j in jobs]
    with _threads(1):
        missing = [i for i, j in enumerate(jobs)
                   if not is_cached(j.loss, j.net, j.data, j.cfg, cache_dir=cache_dir, device=device)]
        if len(missing) > 1:
            order = sorted(missing, key=lambda i: -jobs[i].cfg.steps)  # longest first: the shortest makespan
            failed = _fork_all(jobs, order, min(workers, len(missing)), cache_dir, device, stream)
            if failed:
                warnings.warn(f"{len(failed)} of {len(missing)} parallel training runs failed in their worker "
                              f"(runs {[i + 1 for i in failed]}); training them here", stacklevel=2)
        return [cached_train(j.loss, j.net, j.data, j.cfg, **kwargs) for j in jobs]
