"""The notebook pairs and their parameters stay consistent (CI guard for the notebook pipeline).

- every ``notebooks/NN_name.py`` (jupytext percent) has a paired ``.ipynb`` with the same cells;
- each notebook's ``parameters`` cell defaults are its smoke profile in ``params.yaml``, and every
  profile sets only parameters the notebook defines;
- the runner stops on a profile that does not exist, saying what to do.
"""
from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import jupytext
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
RUNTIME = {"profile", "out_dir"}  # set by the runner, not by params.yaml


def _cells(nb) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


def _defaults(nb) -> dict:
    (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    tree = ast.parse(cell.source)
    return {t.id: ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
            for t in node.targets if isinstance(t, ast.Name)}


@pytest.mark.parametrize("source", NOTEBOOKS, ids=lambda p: p.stem)
def test_pair_in_sync(source: Path):
    paired = source.with_suffix(".ipynb")
    assert paired.is_file(), f"{paired.name} is missing: run `jupytext --sync notebooks/{source.name}`"
    py, ipynb = _cells(jupytext.read(source)), _cells(jupytext.read(paired))
    assert py == ipynb, (f"{source.name} and {paired.name} have different cells: run `jupytext --sync "
                         f"notebooks/{source.name}`, then refresh the outputs with "
                         f"`python scripts/run_notebook.py notebooks/{source.name} --refresh`")


@pytest.mark.parametrize("source", [p for p in NOTEBOOKS if p.stem in PARAMS], ids=lambda p: p.stem)
def test_smoke_profile_is_the_parameters_cell(source: Path):
    defaults = _defaults(jupytext.read(source))
    assert RUNTIME <= set(defaults), f"the parameters cell of {source.name} must define {sorted(RUNTIME)}"
    assert defaults["profile"] == "smoke"
    block = PARAMS[source.stem]
    smoke = {k: v for k, v in defaults.items() if k not in RUNTIME}
    assert block["smoke"] == smoke, (f"params.yaml {source.stem}.smoke differs from the notebook's parameters cell "
                                     "(the nbval run uses the cell): make them equal")
    for profile, values in block.items():
        unknown = set(values) - set(defaults)
        assert not unknown, f"params.yaml {source.stem}.{profile} sets {sorted(unknown)}, unknown to the notebook"


@pytest.mark.parametrize("source", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_reads_every_parameter(source: Path):
    """papermill skips a parameter line it cannot parse (e.g. a second '=' inside its comment) with only
    a log warning, and then calls each injected value of that name an unknown parameter."""
    import papermill

    found = set(papermill.inspect_notebook(str(source.with_suffix(".ipynb"))))
    missing = set(_defaults(jupytext.read(source))) - found
    assert not missing, (f"papermill cannot read {sorted(missing)} from the parameters cell of {source.name}: "
                         "keep one '=' per line there (write 'equal to', '<' or 'at most' in the comment)")


def _runner():
    spec = importlib.util.spec_from_file_location("run_notebook", ROOT / "scripts" / "run_notebook.py")
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    return runner


def test_runner_rejects_an_unknown_profile(capsys):
    runner = _runner()
    with pytest.raises(SystemExit) as exit_info:
        runner.main([str(NOTEBOOKS[0]), "--profile", "no-such-profile"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "profile 'no-such-profile' does not exist" in err and "choose one of" in err


def test_runner_refuses_a_variant_not_named_after_its_notebook(capsys):
    runner = _runner()
    nb04 = ROOT / "notebooks" / "04_semantic_band.py"
    with pytest.raises(SystemExit) as exit_info:
        runner.main([str(nb04), "--params", "05_gud_softness", "--out", "data/cache/never"])
    assert exit_info.value.code == 1
    assert "a variant of 04_semantic_band.py is named 04_semantic_band_<variant>" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        runner.main([str(nb04), "--params", "04_semantic_band_nosuch", "--out", "data/cache/never"])
    assert "params.yaml has no block '04_semantic_band_nosuch'" in capsys.readouterr().err


def test_every_params_block_is_a_notebook_or_a_variant_stage_of_one():
    """A block not named after a notebook is `<stem>_<variant>`: its own DVC stage runs that notebook with
    `--params <block>` into reports/<block>, and every profile of it suits the notebook's parameters cell."""
    from gdmkit import companion

    stems = {p.stem: p for p in NOTEBOOKS}
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    variants = [k for k, v in PARAMS.items() if isinstance(v, dict) and k != "dry_run" and k not in stems]
    assert "04_semantic_band_digits" in variants
    for name in variants:
        owner = [s for s in stems if name.startswith(s + "_")]
        assert len(owner) == 1, f"params.yaml block {name} is neither a notebook nor <notebook stem>_<variant>"
        stage = stages.get(name)
        assert stage and stage["cmd"] == (f"python scripts/run_notebook.py notebooks/{owner[0]}.py "
                                          f"--params {name}"), f"dvc.yaml needs a stage {name} running it"
        assert name in stage["params"] and f"notebooks/{owner[0]}.py" in stage["deps"]
        assert all(next(iter(o)).startswith(f"reports/{name}/") for o in stage["outs"])
        defaults = _defaults(jupytext.read(stems[owner[0]]))
        assert set(PARAMS[name]) == set(PARAMS[owner[0]]), f"{name} needs the profiles of {owner[0]}"
        for profile in PARAMS[name]:
            got_profile, got = companion.profile_params(PARAMS, name, profile, defaults=defaults)
            assert got_profile == profile and set(got) <= set(defaults), (name, profile)


def test_runner_stops_on_a_missing_paper_dataset(capsys, monkeypatch, tmp_path):
    runner = _runner()
    monkeypatch.setattr(runner, "ROOT", tmp_path)  # an empty data root
    runner._check_dataset({"dataset": "digits"}, "laptop")  # offline data needs nothing
    with pytest.raises(SystemExit):
        runner._check_dataset({"dataset": "cifar10", "image_size": 32}, "paper")
    err = capsys.readouterr().err
    assert "needs the dataset 'cifar10'" in err and "place the files there" in err and "--profile laptop" in err


@pytest.mark.parametrize("stem, field, keys", [
    ("01_gaussian_mixture", "steps", "key train_steps"),
    ("01_gaussian_mixture", "lr", "key lr"),
    ("02_ar_cdm_equivalence", "steps", "keys ar_steps, cdm_steps, oa_steps"),
])
def test_a_training_error_names_the_params_yaml_key(stem, field, keys):
    # TrainConfig says "TrainConfig.steps must be > 0"; the user wrote `train_steps:` in params.yaml
    runner = _runner()
    nb = jupytext.read(ROOT / "notebooks" / f"{stem}.py")
    _, params = runner.companion.profile_params(PARAMS, stem, "laptop")
    hint = runner._param_hint(nb, params, f"TrainConfig.{field} must be > 0, got -5", stem, "laptop")
    assert f"TrainConfig.{field} is set by params.yaml {keys} (block {stem}, profile laptop)" in hint
    assert runner._param_hint(nb, params, "some other error", stem, "laptop") == ""


@pytest.mark.parametrize("source", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_has_a_gpu_profile_that_the_runner_refuses_without_cuda(source, capsys, monkeypatch):
    block = PARAMS[source.stem]
    assert "gpu" in block and str(block["gpu"]["device"]).startswith("cuda")
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    runner = _runner()
    with pytest.raises(SystemExit) as exit_info:
        runner.main([str(source), "--profile", "gpu", "--out", "data/cache/never"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "profile 'gpu' trains on 'cuda' but no CUDA GPU is visible here" in err


def test_a_profiles_own_dry_run_entry_updates_the_notebooks_block():
    values = _runner().dry_run_values
    params = {"nb": {"paper": {}, "gpu": {}},
              "dry_run": {"nb": {"steps": 2, "n_ref": 8, "paper": {"steps": 1, "extra": 3}}}}
    assert values(params, "nb", "paper") == {"steps": 1, "n_ref": 8, "extra": 3}
    assert values(params, "nb", "gpu") == {"steps": 2, "n_ref": 8}  # the paper entry is no parameter of gpu's
    with pytest.raises(SystemExit):
        values({**params, "dry_run": {"nb": {"paper": 5}}}, "nb", "paper")
    with pytest.raises(SystemExit):
        values(params, "other", "paper")  # no block for the notebook
