"""Dry runs of the paper (and gpu) profile of every notebook, on stand-in data and weights (issue: the paper
profile, exercised end to end).

``scripts/run_notebook.py NB --profile P --dry-run`` keeps the profile's code path (data loader, network
architecture, schedules, samplers, metrics, report layout), shrinks the budgets named in params.yaml's
``dry_run`` block and runs on the CPU, reading stand-in files in the real on-disk formats written by
:mod:`gdmkit.standins`. Each run must finish and write the declared outputs, every table labelled.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
# a variant (`<stem>_<variant>`: the same notebook, a params.yaml block and DVC stage of its own) runs too
VARIANTS = {k: s for k in PARAMS if k not in NOTEBOOKS and k != "dry_run" for s in NOTEBOOKS
            if k.startswith(s + "_")}
CASES = [(nb, prof) for nb in [*NOTEBOOKS, *sorted(VARIANTS)] for prof in ("paper", "gpu")
         if prof in PARAMS.get(nb, {})]


def test_every_notebook_has_a_paper_profile_and_a_dry_run_block():
    for nb in [*NOTEBOOKS, *VARIANTS]:
        assert "paper" in PARAMS.get(nb, {}), f"params.yaml {nb} has no paper profile"
        assert nb in PARAMS.get("dry_run", {}), (f"params.yaml dry_run has no {nb} entry: add one shrinking its "
                                                 "budgets so its paper profile runs in CI")


@pytest.fixture(scope="session")
def standin_root(tmp_path_factory):
    from gdmkit import standins

    root = tmp_path_factory.mktemp("standins")
    standins.write_all(root)
    return root


def test_standins_are_read_by_the_paper_loaders(standin_root):
    from gdmkit import data

    for name, shape in (("cifar10", (3, 32, 32)), ("mnist", (1, 28, 28)), ("pcam", (3, 96, 96))):
        ds = data.load_dataset(name, standin_root, split="train")
        assert tuple(ds.x.shape[1:]) == shape and ds.x.min() >= -1 and ds.x.max() <= 1
    afhq = data.load_dataset(f"imagefolder:{standin_root / 'afhq'}", image_size=16)
    assert afhq.y.unique().numel() == 3  # cat, dog, wild


def test_standins_written_by_two_processes_at_once_are_whole(tmp_path):
    """Two dry runs started together on a fresh data root both write the stand-ins: they take turns, and
    each reads complete files (unlocked, both wrote the same HDF5 file and one failed to open it)."""
    code = "import sys; from gdmkit import standins; standins.write_all(sys.argv[1], vgg=False)"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "si")], cwd=ROOT,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errs = [p.communicate()[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    from gdmkit import data

    assert data.load_dataset("pcam", tmp_path / "si", split="train").x.shape[1:] == (3, 96, 96)
    assert not [p.name for p in (tmp_path / "si").iterdir() if p.name.startswith(".") and p.is_dir()]


def test_standins_interrupted_leave_no_half_written_folder(tmp_path, monkeypatch):
    """A write that stops half way leaves no folder that a later call would take for complete."""
    from gdmkit import standins

    real = standins.write_image_folder

    def fail_half_way(path, n=320, **kw):
        real(path, n=4, **kw)
        raise KeyboardInterrupt

    monkeypatch.setattr(standins, "write_image_folder", fail_half_way)
    with pytest.raises(KeyboardInterrupt):
        standins.write_all(tmp_path, vgg=False)
    assert not (tmp_path / "afhq").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".afhq")]
    monkeypatch.setattr(standins, "write_image_folder", real)
    standins.write_all(tmp_path, vgg=False)
    assert len(list((tmp_path / "afhq").rglob("*.png"))) == 320


def _jobs() -> int:
    """Dry runs at once: each is one process on one thread (``threads: 1`` in its block), so one per core
    (``GDMKIT_DRY_RUN_JOBS`` overrides)."""
    return max(1, int(os.environ.get("GDMKIT_DRY_RUN_JOBS", 0)) or os.cpu_count() or 1)


def _expected_cost(case: tuple[str, str]) -> tuple[int, str]:
    """Longest first, so that the last run to finish starts early (the pool's wall time is the longest
    worker's): paper before gpu (the paper shapes: 32x32 and 64x64, the paper networks), later sections
    (larger d, exact oracles at d = 3072) before earlier ones."""
    notebook, profile = case
    return int(profile == "paper"), notebook


def _dry_run(notebook: str, profile: str, root: Path, out: Path) -> subprocess.CompletedProcess:
    source = VARIANTS.get(notebook, notebook)
    variant = ["--params", notebook] if notebook in VARIANTS else []
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "run_notebook.py"), f"notebooks/{source}.py",
                           "--profile", profile, "--dry-run", "--data-root", str(root), "--out", str(out),
                           *variant], cwd=ROOT, capture_output=True, text=True)


@pytest.fixture(scope="session")
def dry_runs(request, standin_root, tmp_path_factory):
    """The selected dry runs, started at once on a pool of :func:`_jobs` workers; each test
    waits for its own. Maps (notebook, profile) to (future, out folder).

    Under pytest-xdist every worker collects every test, but only a scheduler that keeps this file in
    one worker (``--dist loadscope`` / ``loadfile``, the README's command) lets that worker own all the
    dry runs; any other split starts one run per test, on a pool of one, so no run happens twice."""
    from concurrent.futures import ThreadPoolExecutor

    selected = {(it.callspec.params["notebook"], it.callspec.params["profile"]) for it in request.session.items
                if getattr(it, "originalname", None) == "test_dry_run_finishes_and_writes_its_outputs"}
    if os.environ.get("PYTEST_XDIST_WORKER") and request.config.getoption("dist", "no") not in (
            "loadscope", "loadfile"):
        with ThreadPoolExecutor(max_workers=1) as pool:
            class _Lazy(dict):  # (notebook, profile) -> its run, started when its test asks for it
                def __missing__(self, case):
                    out = tmp_path_factory.mktemp(f"dry_{case[0]}_{case[1]}") / "out"
                    self[case] = pool.submit(_dry_run, *case, standin_root, out), out
                    return self[case]
            yield _Lazy()
        return
    todo = sorted((c for c in CASES if c in selected), key=_expected_cost, reverse=True)
    with ThreadPoolExecutor(max_workers=_jobs()) as pool:
        runs = {}
        for nb, prof in todo:
            out = tmp_path_factory.mktemp(f"dry_{nb}_{prof}") / "out"
            runs[nb, prof] = pool.submit(_dry_run, nb, prof, standin_root, out), out
        yield runs
        for fut, _ in runs.values():
            fut.cancel()


@pytest.mark.parametrize("notebook, profile", CASES, ids=[f"{n}-{p}" for n, p in CASES])
def test_dry_run_finishes_and_writes_its_outputs(notebook, profile, dry_runs):
    fut, out = dry_runs[notebook, profile]
    res = fut.result()
    assert res.returncode == 0, res.stderr[-4000:]
    for entry in ("figures", "tables", "metrics.json", "headline.json", "notebook.ipynb"):
        assert (out / entry).exists(), f"the dry run of {notebook}/{profile} did not write {entry}"
    assert json.loads((out / "metrics.json").read_text())["dry_run"].startswith(f"dry run of the {profile}")
    assert "dry_run" in json.loads((out / "headline.json").read_text())
    tables = sorted((out / "tables").glob("*.csv"))
    assert tables and all(pd.read_csv(t).columns[0] == "dry run" for t in tables)
    nb = json.loads((out / "notebook.ipynb").read_text())
    assert "**DRY RUN**" in "".join(nb["cells"][1]["source"])


def test_dry_run_refuses_to_write_into_the_committed_reports(tmp_path):
    run = [sys.executable, str(ROOT / "scripts" / "run_notebook.py"), "notebooks/01_gaussian_mixture.py",
           "--profile", "paper", "--dry-run", "--data-root", str(tmp_path / "si")]
    res = subprocess.run(run + ["--out", "reports/01_gaussian_mixture"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 1 and "never writes over the committed reports" in res.stderr
    assert not (tmp_path / "si").exists()  # refused before writing anything
