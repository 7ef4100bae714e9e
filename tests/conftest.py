"""Test-session settings: one intra-op thread.

On a small shared CPU, torch's thread hand-offs dominate the tiny tensors of these tests (a mixture
posterior costs ~30 ms with 2 threads under load, 0.6 ms with 1), and one thread makes reductions
deterministic. Set GDMKIT_TEST_THREADS to change it.
"""
import os

import torch

torch.set_num_threads(int(os.environ.get("GDMKIT_TEST_THREADS", "1")))
