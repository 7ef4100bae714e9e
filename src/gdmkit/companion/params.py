"""Parameters and setup shared by the notebooks and ``scripts/run_notebook.py``.

params.yaml holds one block per notebook and, in it, one parameter set per profile (:data:`PROFILES`);
the smoke set equals the notebook's own ``parameters`` cell. :func:`profile_params` picks one set and
checks the block in the user's terms: every profile sets the same keys, and every value has the type
of the notebook's default (or, without one, of the smoke set's value).
"""
from __future__ import annotations

import ast
import operator
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["PROFILES", "repo_root", "load_params", "profile_params", "parameter_defaults",
           "setup_notebook"]

PROFILES = ("smoke", "laptop", "gpu", "paper")
_REFERENCE_PROFILE = "smoke"  # the profile that equals the notebook's defaults


def repo_root(start: str | os.PathLike | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: cwd) that holds ``params.yaml``."""
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "params.yaml").is_file():
            return folder
    raise FileNotFoundError(f"no params.yaml at or above {here}: run from inside the gdmkit repository "
                            "(notebooks resolve their output folders against the repository root)")


def load_params(path: str | os.PathLike | None = None) -> dict:
    """params.yaml as a dict (default: the repository's)."""
    import yaml

    path = Path(path) if path is not None else repo_root() / "params.yaml"
    with open(path) as f:
        return yaml.safe_load(f) or {}


def parameter_defaults(cell_source: str) -> dict:
    """The literal defaults of a notebook's ``parameters`` cell, ``{name: value}``.

    Assignments whose value is not a Python literal (an expression) are left out.
    """
    out = {}
    for node in ast.parse(cell_source).body:
        if isinstance(node, ast.Assign):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                continue
            out.update({t.id: value for t in node.targets if isinstance(t, ast.Name)})
    return out


def _kind(v: Any) -> str | None:
    """The type a parameter must keep, in params.yaml's words (None: anything goes)."""
    if v is None:
        return None
    if isinstance(v, bool):
        return "a boolean (true or false)"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, float):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, (list, tuple)):
        return "a list"
    if isinstance(v, Mapping):
        return "a mapping"
    return None


def _fits(v: Any, ref: Any) -> bool:
    """Whether ``v`` may stand where the reference value ``ref`` stands (None fits anywhere)."""
    kind = _kind(ref)
    if kind is None or v is None:
        return True
    if kind == "a number":  # an integer is a fine number
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if kind == "a list":
        if not isinstance(v, (list, tuple)):
            return False
        refs = [r for r in ref if _kind(r) is not None]
        if not refs or len({_kind(r) for r in refs}) != 1:
            return True
        return all(_fits(x, refs[0]) for x in v)
    return _kind(v) == kind or (kind == "a mapping" and isinstance(v, Mapping))


def _check_block(block: Mapping, notebook: str, defaults: Mapping | None) -> None:
    """ValueError if a profile lacks keys another one sets, or a value has the wrong type."""
    sets = {p: dict(v or {}) for p, v in block.items()}
    bad = [p for p, v in sets.items() if not isinstance(v, Mapping)]
    if bad:
        raise ValueError(f"params.yaml: {notebook}.{bad[0]} must be a mapping of parameter names to values")
    every = set().union(*sets.values()) if sets else set()
    for p, v in sets.items():
        missing = sorted(every - set(v))
        if missing:
            others = [q for q in sets if q != p and set(missing) & set(sets[q])]
            raise ValueError(f"params.yaml: profile {p!r} of {notebook} lacks {', '.join(missing)}, which "
                             f"{', '.join(others)} set(s); add them under {notebook}.{p} (every profile "
                             "sets every parameter, so none falls back silently to the notebook default)")
    smoke = sets.get(_REFERENCE_PROFILE, {})
    for p, v in sets.items():
        for key, value in v.items():
            if defaults is not None and key in defaults:
                ref, where = defaults[key], "the notebook's default"
            elif key in smoke and p != _REFERENCE_PROFILE:
                ref, where = smoke[key], f"the {_REFERENCE_PROFILE} profile"
            else:
                continue
            if not _fits(value, ref):
                raise ValueError(f"params.yaml: {notebook}.{p}.{key} is {value!r} "
                                 f"({type(value).__name__}), but {where} is {ref!r}: expected "
                                 f"{_kind(ref)}; {_hint(key, value, ref)}")


def _hint(key: str, value: Any, ref: Any) -> str:
    if isinstance(value, str) and isinstance(ref, (int, float)) and not isinstance(ref, bool):
        try:
            float(value)
        except ValueError:
            return f"write a number, e.g. `{key}: {ref!r}`"
        if "e" in value.lower() and "." not in value:
            return (f"YAML reads an exponent without a decimal point as text: write e.g. "
                    f"`{key}: {float(value)!r}`")
        return f"write it without quotes: `{key}: {value}`"
    return f"write e.g. `{key}: {ref!r}`"


def profile_params(params: Mapping, notebook: str, profile: str | None = None, *,
                   defaults: Mapping | None = None) -> tuple[str, dict]:
    """(profile, that notebook's parameters) from a params.yaml dict; the profile defaults to its ``profile``.

    Parameters
    ----------
    params : mapping
        params.yaml as loaded by :func:`load_params`.
    notebook : str
        The notebook's block, its file stem (e.g. "01_gaussian_mixture").
    profile : str, optional
        Default: ``params["profile"]``.
    defaults : mapping, optional
        The notebook's own defaults (:func:`parameter_defaults` of its parameters cell): the types
        every profile must keep. Without them the smoke set's values give the types.

    Raises
    ------
    ValueError
        When the notebook block or the profile is missing, a profile lacks a key another one sets,
        or a value has another type than the notebook's default (e.g. ``train_steps: "5000"``): the
        message names the params.yaml key, the notebook block, the profile and the expected type.
    """
    if notebook not in params:
        blocks = [k for k, v in params.items() if isinstance(v, Mapping)]
        raise ValueError(f"params.yaml has no block {notebook!r} (blocks: {', '.join(blocks)}); add one with "
                         f"a parameter set per profile ({', '.join(PROFILES)})")
    profile = profile if profile is not None else params.get("profile")
    block = params[notebook]
    if not isinstance(block, Mapping):
        raise ValueError(f"params.yaml: {notebook} must map profiles ({', '.join(PROFILES)}) to parameter "
                         f"sets, got {block!r:.80}")
    if profile not in block:
        raise ValueError(f"profile {profile!r} does not exist for {notebook}: choose one of "
                         f"{', '.join(map(str, block))} (set `profile:` in params.yaml or pass --profile), "
                         f"or add a {profile!r} block under {notebook!r} in params.yaml")
    _check_block(block, notebook, defaults)
    return profile, dict(block[profile] or {})


def setup_notebook(seed: int = 0, threads: int | None = None, style: bool = True) -> None:
    """Seed torch's global RNG, fix the CPU thread count (None: leave it) and set the figure style.

    Small CPU models run faster and bit-reproducibly on one thread, and printed numbers then do not
    depend on the machine's core count (nbval compares them).
    """
    import torch  # here: scripts/run_notebook.py reads params without loading torch
    if threads is not None:
        try:
            n = operator.index(threads)
        except TypeError:
            n = 0
        if isinstance(threads, bool) or n < 1:
            raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
        torch.set_num_threads(n)
    torch.manual_seed(seed)
    if style:
        from .. import plotting

        plotting.use_style()


DRY_RUN_ENV = "GDMKIT_DRY_RUN"  # set by scripts/run_notebook.py --dry-run in the kernel's environment


def dry_run() -> str | None:
    """What the dry run is (e.g. "paper profile, stand-in data and weights, budgets shrunk") when this
    kernel runs one (``scripts/run_notebook.py --dry-run``), else None.

    Under a dry run :class:`Report` labels every table and metrics file, and asserted claims that do not
    hold are recorded without stopping the run (the numbers of stand-in data decide nothing).
    """
    return os.environ.get(DRY_RUN_ENV) or None

