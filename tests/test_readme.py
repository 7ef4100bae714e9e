"""Every command the README prints works as printed (its program exists and accepts every flag).

The cheap ones run for real (`dvc metrics show/diff`); the long ones (`dvc repro`, `dvc exp run`, a
notebook run, the benchmarks) are checked against their own ``--help``: a flag such as ``-S`` that the
subcommand does not accept fails here, as `dvc repro -S` once did.
"""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
README = (ROOT / "README.md").read_text()
COMMANDS = sorted({c for c in re.findall(r"`((?:python3 -m pip install uv && )?uv run [^`]+)`", README)}
                  | set(re.findall(r"^(python3 -m pip install uv && uv run [^\n]+)$", README, re.M)))


def _argv(command: str) -> list[str]:
    """The program's argv, without the `pip install uv &&` prefix and `uv run --frozen`."""
    tail = command.split("&&")[-1].strip()
    argv = shlex.split(tail)
    assert argv[:2] == ["uv", "run"], command
    argv = [a for a in argv[2:] if a != "--frozen"]
    return argv


def _run(argv: list[str], timeout: int = 120) -> subprocess.CompletedProcess:
    prog = argv[0]
    if prog == "python":
        argv = [sys.executable, *argv[1:]]
    else:
        argv = [str(BIN / prog), *argv[1:]]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def _flags(argv: list[str]) -> list[str]:
    return [a.split("=")[0] for a in argv if a.startswith("-")]


def test_the_readme_lists_commands():
    assert len(COMMANDS) >= 8, COMMANDS
    assert any("pytest -n auto --dist loadscope --no-loadscope-reorder --nbval tests notebooks" in c
               for c in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_accepts_its_flags(command: str):
    argv = _argv(command)
    prog = argv[0]
    if prog == "python":  # a script: its argparse --help must list every flag
        script = [a for a in argv[1:] if not a.startswith("-")][0]
        assert (ROOT / script).is_file(), f"README runs {script}, which does not exist"
        helptext = _run(["python", script, "--help"]).stdout
    else:
        assert (BIN / prog).is_file(), f"README runs {prog}, which the environment does not install"
        words = [a for a in argv[1:] if not a.startswith("-") and "/" not in a and "=" not in a]
        sub = words[:2] if prog == "dvc" and words[:1] in (["exp"], ["metrics"]) else words[:1]
        if prog == "jupyter":
            sub = words[:1]
        helptext = _run([prog, *sub, "--help"]).stdout
    assert helptext, f"{command}: --help printed nothing"
    for flag in _flags(argv[1:]):
        assert re.search(rf"(^|[\s,\[]){re.escape(flag)}([\s,=\]]|$)", helptext, re.M), \
            f"README command `{command}` uses {flag}, which `{prog} {' '.join(sub) if prog != 'python' else ''} " \
            f"--help` does not list"


@pytest.mark.parametrize("command", [c for c in COMMANDS if " metrics " in c])
def test_metrics_commands_run_as_printed(command: str):
    import json

    out = _run(_argv(command))
    assert out.returncode == 0, out.stderr
    headlines = sorted((ROOT / "reports").glob("*/headline.json"))
    assert headlines, "no reports/*/headline.json: run dvc repro"
    for f in headlines:
        for key, value in json.loads(f.read_text()).items():
            assert key in out.stdout, f"{command} does not show {f.parent.name}'s {key}"
            if isinstance(value, float):  # printed as stored, never rounded (4.8e-07 once showed as 0.0)
                assert str(value) in out.stdout, f"{command} prints {key} = {value} otherwise"


def test_the_results_section_is_what_reports_give():
    out = subprocess.run([sys.executable, "scripts/readme_results.py", "--check"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "<!-- results:start -->" in README and "## Results" in README
    for stem in ("01_gaussian_mixture", "02_ar_cdm_equivalence", "03_grouping_ordering"):
        assert f"reports/{stem}/figures/" in README and f"reports/{stem}/tables/claims.md" in README


def test_the_quickstart_environment_is_installed_as_bytecode():
    """pyproject's ``[tool.uv] compile-bytecode``: the Quickstart's environment carries the installed
    packages' .pyc, so that a process (a notebook kernel, a dry run) does not recompile torch from source
    where ``PYTHONDONTWRITEBYTECODE`` is set, as on this project's CI machine (24 s -> 9 s per process)."""
    import importlib.util
    import tomllib

    import torch

    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"].get("compile-bytecode") is True, \
        "set `compile-bytecode = true` under [tool.uv] in pyproject.toml"
    assert Path(importlib.util.cache_from_source(torch.__file__)).is_file(), \
        "torch has no bytecode in this environment: run `uv sync --frozen --compile-bytecode`"
