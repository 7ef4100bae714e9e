"""companion.cached_train_many: forked workers train exactly what cached_train trains on one thread."""
from __future__ import annotations

import os

import pytest
import torch

from gdmkit import companion
from gdmkit.train import TrainConfig
from test_companion_cache import _setup

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="parallel training forks (POSIX only)")


def _jobs(targets=("u", "eps", "x0"), steps=(5, 3, 4)):
    return [companion.TrainJob(*_setup(target=t, cfg=TrainConfig(steps=s, batch_size=8, lr=1e-2, log_every=1)))
            for t, s in zip(targets, steps)]


def _params(result):
    return [p.detach().clone() for p in result.ema.parameters()]


def test_workers_train_the_bytes_that_one_thread_trains_in_process(tmp_path):
    """Two workers on a caller with two threads: the runs are keyed and trained on one thread, and equal
    bit for bit what cached_train trains on one thread in this process; the caller keeps its two."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        parallel = companion.cached_train_many(_jobs(), workers=2, cache_dir=tmp_path / "forked", device="cpu")
        assert torch.get_num_threads() == 2  # the caller's thread count is restored
        assert not any(companion.is_cached(j.loss, j.net, j.data, j.cfg, cache_dir=tmp_path / "forked",
                                           device="cpu") for j in _jobs())  # not the two-thread runs
        torch.set_num_threads(1)
        serial = [companion.cached_train(j.loss, j.net, j.data, j.cfg, cache_dir=tmp_path / "serial", device="cpu")
                  for j in _jobs()]
    finally:
        torch.set_num_threads(before)
    assert [r.resumed_from for r in parallel] == [5, 3, 4]  # every run was loaded: a worker trained it
    assert [r.resumed_from for r in serial] == [0, 0, 0]
    for p, s in zip(parallel, serial):
        assert p.history == s.history
        for a, b in zip(_params(p), _params(s)):
            assert torch.equal(a, b)
    # the same folders: the keys record one thread, whichever process trained
    assert sorted(d.name for d in (tmp_path / "forked").iterdir()) == \
        sorted(d.name for d in (tmp_path / "serial").iterdir())


def test_one_worker_is_the_plain_loop_and_a_second_call_loads(tmp_path):
    first = companion.cached_train_many(_jobs(), workers=1, cache_dir=tmp_path)
    loop = [companion.cached_train(j.loss, j.net, j.data, j.cfg, cache_dir=tmp_path) for j in _jobs()]
    assert [r.resumed_from for r in first] == [0, 0, 0]
    assert [r.resumed_from for r in loop] == [5, 3, 4]
    for a, b in zip(first, loop):
        assert all(torch.equal(p, q) for p, q in zip(_params(a), _params(b)))


def test_is_cached_sees_finished_runs_only(tmp_path):
    def job(steps=5):  # a fresh job each time: cached_train trains the network in place
        return _jobs(("u",), (steps,))[0]

    assert not companion.is_cached(*vars(job()).values(), cache_dir=tmp_path)
    companion.cached_train(*vars(job()).values(), cache_dir=tmp_path)
    assert companion.is_cached(*vars(job()).values(), cache_dir=tmp_path)
    assert not companion.is_cached(*vars(job(9)).values(), cache_dir=tmp_path)  # another run
    (ckpt,) = tmp_path.glob("*/*.safetensors")
    ckpt.write_bytes(ckpt.read_bytes()[:100])  # truncated: not a finished run
    assert not companion.is_cached(*vars(job()).values(), cache_dir=tmp_path)


def test_a_failing_run_raises_its_own_error_in_the_caller(tmp_path):
    jobs = _jobs()
    bad = jobs[1]
    bad.data = bad.data.clone()
    bad.data[0, 0, 0, 0] = float("nan")  # train refuses NaN data: the worker fails, then the caller
    with pytest.warns(UserWarning, match="1 of 3 parallel training runs failed"), \
            pytest.raises(ValueError, match="NaN|nan|finite"):
        companion.cached_train_many(jobs, workers=2, cache_dir=tmp_path, device="cpu")
    # the runs that did not fail are in the cache, keyed on one thread (the tests run on one)
    assert torch.get_num_threads() == 1
    fresh = _jobs()  # fresh jobs: the ones above were trained (or loaded) in place
    assert [companion.is_cached(*vars(fresh[i]).values(), cache_dir=tmp_path, device="cpu")
            for i in (0, 2)] == [True, True]


@pytest.mark.parametrize("workers", [0, -1, 1.5, True, "2"])
def test_workers_must_be_a_positive_integer(workers, tmp_path):
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        companion.cached_train_many(_jobs(), workers=workers, cache_dir=tmp_path)


def test_jobs_must_be_train_jobs(tmp_path):
    with pytest.raises(ValueError, match="TrainJob"):
        companion.cached_train_many([_setup()], workers=2, cache_dir=tmp_path)
