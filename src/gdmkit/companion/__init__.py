"""The companion's harness around the library: parameters, claims, report folders and a model cache.

The library proper (:mod:`gdmkit.bases` … :mod:`gdmkit.likelihood`, :mod:`gdmkit.data`,
:mod:`gdmkit.metrics`) works without notebooks and never imports this package; the notebooks and
``scripts/run_notebook.py`` use it::

    from gdmkit import companion

    companion.setup_notebook(seed=seed, threads=threads)
    report, claims = companion.Report(out_dir), companion.Claims()
    run = companion.cached_train(path.loss_fn(), net, x_train, cfg, device=device)
    claims.report("trained GDM learns the mixture", f"ED {ed:.2g} vs floor {floor:.2g}", ed < 2 * floor,
                  values={"ed": ed, "floor": floor})

- :mod:`~gdmkit.companion.params` — :data:`PROFILES`, :func:`repo_root`, :func:`load_params`,
  :func:`profile_params` (checks types and keys of params.yaml), :func:`setup_notebook`,
  :func:`dry_run` (what a dry run of a profile on stand-in data is, when this kernel runs one)
- :mod:`~gdmkit.companion.claims` — :class:`Claims`, :class:`Claim`, :class:`ClaimFailed`,
  :data:`INCONCLUSIVE`; no verdict rests on NaN or missing evidence
- :mod:`~gdmkit.companion.report` — :class:`Report`: figures, tables, result sets, metrics, all
  written atomically
- :mod:`~gdmkit.companion.cache` — :func:`cached_train`, :func:`model_key`, :func:`history_frame`:
  trained models keyed on configs
- :mod:`~gdmkit.companion.parallel` — :class:`TrainJob`, :func:`cached_train_many`: several cached
  runs at once on a multi-core CPU (one forked process per run)
"""
from __future__ import annotations

import importlib

from .claims import BAD_EVIDENCE, INCONCLUSIVE, Claim, ClaimFailed, Claims
from .params import (DRY_RUN_ENV, PROFILES, dry_run, load_params, parameter_defaults, profile_params, repo_root,
                     setup_notebook)
from .report import Report

# the training half loads torch on first use, so that scripts/run_notebook.py (params and claims only) starts
# without it: a dry run's runner process then starts in about a second instead of four
_LAZY = {"cached_train": ".cache", "history_frame": ".cache", "is_cached": ".cache", "key_hash": ".cache",
         "model_key": ".cache", "TrainJob": ".parallel", "cached_train_many": ".parallel"}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

__all__ = [
    "PROFILES", "DRY_RUN_ENV", "dry_run", "repo_root", "load_params", "profile_params", "parameter_defaults", "setup_notebook",
    "INCONCLUSIVE", "BAD_EVIDENCE", "Claim", "Claims", "ClaimFailed", "Report",
    "cached_train", "is_cached", "model_key", "key_hash", "history_frame", "TrainJob", "cached_train_many",
]
