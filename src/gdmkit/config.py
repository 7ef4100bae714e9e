"""Plain configs: every object that decides what a run computes can say what it is, and be rebuilt.

A *config* is a dict of JSON values (str, int, float, bool, None, lists, dicts) whose leaves may also
be tensors (a fitted PCA's U, a schedule's log-variances, a grouping's labels). Every configurable
gdmkit class has ``to_config() -> dict`` with a ``"type"`` entry naming the class, and a classmethod
``from_config(cfg)`` that rebuilds an equal object; :func:`from_config` dispatches on ``"type"``
through a closed registry of gdmkit classes (never an import path, never a pickle).

- :func:`fingerprint` hashes configs (tensor bytes, dtype and shape included), so a cache key built
  from configs changes with any parameter and never with prose.
- :func:`split_tensors` / :func:`join_tensors` turn a config into JSON plus a flat dict of named
  tensors and back: what a safetensors checkpoint stores in its header and its tensor table.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

__all__ = ["register", "from_config", "registered", "fingerprint", "split_tensors", "join_tensors",
           "canonical", "TENSOR_REF"]

_REGISTRY: dict[str, type] = {}
TENSOR_REF = "$tensor"  # {"$tensor": name} stands for a tensor in split_tensors' output


def register(cls: type) -> type:
    """Class decorator: make ``cls`` rebuildable by :func:`from_config` under ``cls.__name__``."""
    name = cls.__name__
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"two configurable classes are both named {name!r}; rename one")
    _REGISTRY[name] = cls
    return cls


def registered() -> list[str]:
    """Names of the classes :func:`from_config` can build."""
    return sorted(_REGISTRY)


def from_config(cfg: Mapping) -> Any:
    """Rebuild the object a ``to_config()`` described (dispatch on ``cfg["type"]``)."""
    if not isinstance(cfg, Mapping) or "type" not in cfg:
        raise ValueError(f"a config is a dict with a 'type' entry naming a gdmkit class, got {cfg!r:.200}; "
                         "pass what an object's to_config() returned")
    name = cfg["type"]
    if name not in _REGISTRY:
        _import_all()
    if name not in _REGISTRY:
        raise ValueError(f"unknown config type {name!r}; known types: {', '.join(registered())}")
    return _REGISTRY[name].from_config(cfg)


def _import_all() -> None:
    """Import the modules that register classes (so from_config works after `import gdmkit.config`)."""
    from . import bases, groupings, nets, paths, schedules  # noqa: F401


def canonical(v: Any) -> Any:
    """A config with tuples as lists, numpy/torch scalars as Python numbers (tensors kept)."""
    if isinstance(v, Tensor):
        return v
    if isinstance(v, Mapping):
        return {str(k): canonical(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [canonical(x) for x in v]
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        return v.item()
    return v


def fingerprint(*parts: Any) -> str:
    """sha256 hex digest of configs, tensors (bytes, dtype, shape), state dicts and JSON values.

    Floats are hashed by their exact repr, so 0.1 and 0.1 + 1e-17 differ; dict order does not matter.
    """
    h = hashlib.sha256()

    def feed(x: Any) -> None:
        if isinstance(x, Tensor):
            t = x.detach().cpu().contiguous()
            h.update(f"tensor{tuple(t.shape)}{t.dtype}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(x, Mapping):
            h.update(b"{")
            for k in sorted(x, key=str):
                h.update(f"<{k}>".encode())
                feed(x[k])
            h.update(b"}")
        elif isinstance(x, (list, tuple)):
            h.update(b"[")
            for v in x:
                feed(v)
            h.update(b"]")
        elif isinstance(x, float):
            h.update(f"float:{x!r}".encode())
        else:
            h.update(json.dumps(canonical(x), sort_keys=True).encode())

    for p in parts:
        feed(p)
    return h.hexdigest()


def split_tensors(cfg: Any, prefix: str = "config") -> tuple[Any, dict[str, Tensor]]:
    """(JSON-only config, {name: tensor}): each tensor leaf becomes ``{"$tensor": name}``.

    Names are ``prefix.<key path>`` (dots between keys, list indices as numbers), unique per leaf.
    """
    tensors: dict[str, Tensor] = {}

    def walk(v: Any, name: str) -> Any:
        if isinstance(v, Tensor):
            tensors[name] = v.detach().to("cpu", copy=True).contiguous()
            return {TENSOR_REF: name}
        if isinstance(v, Mapping):
            return {str(k): walk(x, f"{name}.{k}") for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [walk(x, f"{name}.{i}") for i, x in enumerate(v)]
        v = canonical(v)
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"config entry {name} is {v}; configs hold finite numbers only")
        return v

    return walk(cfg, prefix), tensors


def join_tensors(cfg: Any, tensors: Mapping[str, Tensor]) -> Any:
    """Inverse of :func:`split_tensors`: put the named tensors back in place of their references."""
    if isinstance(cfg, Mapping):
        if set(cfg) == {TENSOR_REF}:
            name = cfg[TENSOR_REF]
            if name not in tensors:
                raise ValueError(f"the config refers to tensor {name!r}, which the file does not hold; "
                                 "the checkpoint is incomplete: retrain or restore it")
            return tensors[name]
        return {k: join_tensors(v, tensors) for k, v in cfg.items()}
    if isinstance(cfg, list):
        return [join_tensors(v, tensors) for v in cfg]
    return cfg
