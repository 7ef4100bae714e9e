"""The notebook pipeline on a tiny notebook: scripts/run_notebook.py directly, and DVC around it.

Each test builds a scratch repository (params.yaml, a jupytext notebook that writes figures/, tables/,
data/ and metrics.json without importing torch, a copy of the runner) and checks what a user relies on:
a failed run leaves the previous outputs byte for byte; an absolute ``--out`` reports the notebook's
own error; one progress line per code cell on stderr; two identical runs write identical bytes (so
git and dvc.lock stay clean); and through DVC with the project's own stage layout, a failing stage
deletes nothing, a forced rebuild leaves git clean, ``dvc exp run -S profile=...`` picks a profile and
``dvc metrics show --precision`` keeps small numbers.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RUNNER = ROOT / "scripts" / "run_notebook.py"
BIN = Path(sys.executable).parent

NOTEBOOK = '''\
# %% [markdown]
# # 00 · A tiny notebook

# %% tags=["parameters"]
profile = "smoke"
out_dir = "data/cache/smoke/00_tiny"
value = 1.0
fail = False

# %% [markdown]
# ## Writing the outputs

# %%
import json
import os
import sys
from pathlib import Path

out = Path(out_dir)
for sub in ("figures", "tables", "data"):
    (out / sub).mkdir(parents=True, exist_ok=True)
(out / "figures" / "fig.svg").write_text(f"<svg>{value}</svg>\\n")
print("training step 1 of 1")
if os.environ.get("GDMKIT_PROGRESS"):  # the runner's kernel: a progress bar for the terminal only
    print("train: 100% 1/1 [00:00<00:00, 1234 it/s]", file=sys.__stderr__, flush=True)

# %%
# tables and data
(out / "tables" / "t.csv").write_text(f"a,b\\n{value},{2 * value}\\n")
(out / "data" / "d.txt").write_text(str(value))
if fail:
    raise RuntimeError("asked to fail")
value * 2

# %%
(out / "metrics.json").write_text(json.dumps({"value": value, "tiny": 4.8e-7}) + "\\n")
(out / "headline.json").write_text(json.dumps({"value": value, "tiny": 4.8e-7}) + "\\n")
'''
PARAMS = {"profile": "laptop", "00_tiny": {"smoke": {"value": 1.0, "fail": False},
                                           "laptop": {"value": 2.0, "fail": False},
                                           "bad": {"value": 3.0, "fail": True}}}
N_CODE = 5  # parameters, injected parameters, three code cells


def _scratch_repo(root: Path) -> Path:
    (root / "scripts").mkdir(parents=True)
    (root / "notebooks").mkdir()
    shutil.copy(RUNNER, root / "scripts" / "run_notebook.py")
    (root / "notebooks" / "00_tiny.py").write_text(NOTEBOOK)
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS, sort_keys=False))
    (root / ".gitignore").write_text("/data/cache/\n")
    return root


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _runner(root: Path, monkeypatch):
    spec = importlib.util.spec_from_file_location("run_notebook_tiny", root / "scripts" / "run_notebook.py")
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    monkeypatch.setattr(runner, "ROOT", root)
    return runner


def _run(runner, root: Path, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            runner.main([str(root / "notebooks" / "00_tiny.py"), *args])
        except SystemExit as exit_info:
            code = exit_info.code
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """A scratch repository after two identical successful runs: (runner, root, [snapshots], [stderrs])."""
    root = _scratch_repo(tmp_path_factory.mktemp("pipeline"))
    with pytest.MonkeyPatch.context() as mp:
        runner = _runner(root, mp)
        snaps, runs = [], []
        for _ in range(2):
            runs.append(_run(runner, root))
            snaps.append(_snapshot(root / "reports"))
        yield runner, root, snaps, runs


def test_progress_one_line_per_code_cell(ran):
    _, _, _, runs = ran
    (code1, out1, err1), (code2, _, err2) = runs
    assert code1 == code2 == 0, err1
    lines = [ln for ln in err1.splitlines() if re.match(r"run_notebook: \[\d+/\d+\]", ln)]
    assert [re.search(r"\[(\d+)/(\d+)\]", ln).groups() for ln in lines] == \
        [(str(k), str(N_CODE)) for k in range(1, N_CODE + 1)]
    assert all("elapsed" in ln for ln in lines)
    assert "· Writing the outputs" in lines[2] and "· tables and data" in lines[3]
    assert "training step 1 of 1" in out1  # the kernel's stdout passes through
    assert "finished in" in err1 and "value 2.0" in err1  # headline.json at the end
    lines2 = [ln for ln in err2.splitlines() if re.match(r"run_notebook: \[\d+/\d+\]", ln)]
    # the second run estimates the time left from the first run's timings
    assert len(lines2) == N_CODE and all(re.search(r"~\d+:\d\d left", ln) for ln in lines2)


def test_identical_runs_write_identical_bytes(ran):
    _, root, (first, second), _ = ran
    assert {"00_tiny/figures/fig.svg", "00_tiny/metrics.json", "00_tiny/notebook.ipynb"} <= set(first)
    assert first == second
    outputs = json.dumps([c.get("outputs", []) for c in json.loads(first["00_tiny/notebook.ipynb"])["cells"]])
    assert "training step" in outputs and "it/s" not in outputs  # sys.__stderr__ stays out of the notebook
    assert not (root / "reports" / "00_tiny.new").exists()
    nb = json.loads(first["00_tiny/notebook.ipynb"])
    text = first["00_tiny/notebook.ipynb"].decode()
    for field in ("start_time", "end_time", "duration", "iopub.", "output_path", "input_path"):
        assert field not in text, field
    assert nb["metadata"]["papermill"] == {"parameters": {**PARAMS["00_tiny"]["laptop"], "profile": "laptop",
                                                          "out_dir": "reports/00_tiny"}}
    injected = [c for c in nb["cells"] if c["id"] == "injected-parameters"]
    assert len(injected) == 1 and 'out_dir = "reports/00_tiny"' in "".join(injected[0]["source"])
    assert len({c["id"] for c in nb["cells"]}) == len(nb["cells"])


def test_failed_run_leaves_the_previous_outputs(ran, monkeypatch):
    runner, root, (before, _), _ = ran
    code, _, err = _run(runner, root, "--profile", "bad")  # raises in the notebook, after writing files
    assert code == 1
    assert _snapshot(root / "reports" / "00_tiny") == {k[len("00_tiny/"):]: v for k, v in before.items()}
    assert "stopped in cell" in err and "RuntimeError: asked to fail" in err and "are unchanged" in err
    failed = json.loads((root / "reports" / "00_tiny.new" / "notebook.ipynb").read_text())
    assert "asked to fail" in json.dumps(failed)  # the traceback is kept for inspection
    code, _, err = _run(runner, root, "--profile", "nope")
    assert code == 1 and "profile 'nope' does not exist" in err
    assert _snapshot(root / "reports" / "00_tiny") == {k[len("00_tiny/"):]: v for k, v in before.items()}


def test_absolute_out_reports_the_notebooks_error(ran, tmp_path):
    runner, root, _, _ = ran
    out = tmp_path / "elsewhere" / "tiny"
    code, _, err = _run(runner, root, "--profile", "bad", "--out", str(out))
    assert code == 1 and "RuntimeError: asked to fail" in err and "subpath" not in err
    assert f"is {out}.new/notebook.ipynb" in err and not out.exists()
    assert (out.parent / "tiny.new" / "figures" / "fig.svg").read_text() == "<svg>3.0</svg>\n"


def test_project_stages_persist_their_outputs():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        for out in stage.get("outs", []) + stage.get("metrics", []):
            ((path, opts),) = out.items()
            assert opts.get("cache") is False and opts.get("persist") is True, (
                f"dvc.yaml {name}: {path} needs `cache: false` and `persist: true` (dvc must not delete the "
                "committed outputs before the runner replaces them)")


def _tiny_stage() -> dict:
    """The project's first stage (cmd, deps, params, outs, metrics) with the tiny notebook's names."""
    name, stage = next(iter(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items()))
    stage = yaml.safe_load(yaml.safe_dump(stage).replace(name, "00_tiny"))
    stage["deps"] = [d for d in stage["deps"] if d != "src/gdmkit"]  # gdmkit comes from the environment
    return stage


def test_dvc_keeps_outputs_of_a_failed_stage_and_rebuilds_cleanly(tmp_path):
    dvc = BIN / "dvc"
    if not dvc.is_file():
        pytest.skip("dvc is not installed in this environment (uv sync --group dev)")
    root = _scratch_repo(tmp_path / "repo")
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"00_tiny": _tiny_stage()}}, sort_keys=False))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "DVC_NO_ANALYTICS": "1"}

    def sh(*cmd: str, ok: bool = True) -> subprocess.CompletedProcess:
        p = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
        assert (p.returncode == 0) == ok, f"{' '.join(cmd)}: rc {p.returncode}\n{p.stdout}\n{p.stderr}"
        return p

    def git_status() -> str:
        return sh("git", "status", "--porcelain", "--untracked-files=all").stdout

    sh("git", "init", "-q")
    sh("git", "config", "user.email", "test@example.com")
    sh("git", "config", "user.name", "test")
    sh(str(dvc), "init", "-q")
    first = sh(str(dvc), "repro")
    sh("git", "add", "-A")
    sh("git", "commit", "-qm", "laptop run")
    outputs = _snapshot(root / "reports")
    assert len(outputs) == 6

    params = root / "params.yaml"
    params.write_text(params.read_text().replace("profile: laptop", "profile: nope"))
    failed = sh(str(dvc), "repro", ok=False)
    assert "profile 'nope' does not exist" in failed.stderr
    assert git_status() == " M params.yaml\n" and _snapshot(root / "reports") == outputs
    sh("git", "checkout", "-q", "--", "params.yaml")
    assert "[1/5]" in first.stderr and "without encryption" not in first.stdout + first.stderr
    assert "1234 it/s" in first.stderr  # a progress bar on the kernel's sys.__stderr__ reaches the terminal

    sh(str(dvc), "exp", "run", "-S", "profile=smoke")  # the way to run another profile through dvc
    assert (root / "reports" / "00_tiny" / "figures" / "fig.svg").read_text() == "<svg>1.0</svg>\n"
    assert "profile: smoke" in params.read_text()
    shown = sh(str(dvc), "metrics", "show", "--precision", "30").stdout
    assert "4.8e-07" in shown and "1.0" in shown
    sh(str(dvc), "exp", "run", "-S", "profile=laptop")  # a rebuild with identical results: git stays clean
    assert git_status() == "" and _snapshot(root / "reports") == outputs


def test_the_runner_starts_without_torch_and_the_slow_grammar_package():
    """Every notebook run (14 dry runs in CI) pays the runner's start-up once: the runner itself reads params
    and claims without loading torch (the kernel loads it), and keeps jsonschema from compiling
    rfc3987_syntax's grammars when nbformat imports it (3 s, for a format no notebook uses). The training
    half of the companion still loads on first use."""
    code = ("import runpy, sys; sys.argv = ['run_notebook.py', '--help']\n"
            "try:\n    runpy.run_path(%r, run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            "import nbformat, papermill\n"
            "print(sorted(m for m in ('torch', 'rfc3987_syntax') if sys.modules.get(m) is not None))\n"
            "from gdmkit import companion\n"
            "print(callable(companion.cached_train), 'torch' in sys.modules)\n" % str(RUNNER))
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.splitlines()[-2:] == ["[]", "True True"], res.stdout[-2000:]
