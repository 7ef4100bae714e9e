"""Test-session settings: one intra-op thread.

On a small shared CPU, torch's thread hand-offs dominate the tiny tensors of these tests (a mixture
posterior costs ~30 ms with 2 threads under load, 0.6 ms with 1), and one thread makes reductions
deterministic. Set GDMKIT_TEST_THREADS to change it.

Collection order: the dry runs of the paper profiles first. Under the README's
``-n auto --dist loadscope --no-loadscope-reorder`` the longest file then starts at once in one worker
while the others take the unit tests and the notebooks; last, it would be the run's tail.
"""
import os

import torch

torch.set_num_threads(int(os.environ.get("GDMKIT_TEST_THREADS", "1")))


def pytest_collection_modifyitems(session, config, items):
    """tests/test_dry_runs.py first, everything else in its collected order (the same on every worker)."""
    first = [it for it in items if it.nodeid.startswith("tests/test_dry_runs.py")]
    if first:
        rest = [it for it in items if not it.nodeid.startswith("tests/test_dry_runs.py")]
        items[:] = first + rest
