"""`[tool.gradaudit]` configuration through the CLI: discovery, precedence, every key, errors."""

from __future__ import annotations

import dataclasses
import json

import pytest

from gradaudit.settings import resolve_settings
from tests.gate.conftest import EXPLODING, HEALTHY, VANISHING_RELU, VANISHING_SIGMOID, finding_codes, write_config


def test_nearest_pyproject_is_found_from_a_subdirectory(cli, clean_environment, monkeypatch):
    assert cli("check", EXPLODING, "--static-only")[0] == 1
    write_config(clean_environment, 'fail-on = "never"')
    deeper = clean_environment / "src" / "models"
    deeper.mkdir(parents=True)
    monkeypatch.chdir(deeper)
    assert cli("check", EXPLODING, "--static-only")[0] == 0


def test_nearer_pyproject_without_table_is_not_skipped_for_a_farther_one(cli, clean_environment, monkeypatch):
    """Like ruff and coverage: the nearest pyproject.toml is the project's, table or not."""
    write_config(clean_environment, 'fail-on = "never"')
    project = clean_environment / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    monkeypatch.chdir(project)
    assert cli("check", EXPLODING, "--static-only")[0] == 1


def test_config_file_option(cli, clean_environment):
    config = write_config(clean_environment, 'fail-on = "never"', name="gate.toml")
    assert cli("check", EXPLODING, "--static-only", "--config", config)[0] == 0
    code, _, err = cli("check", EXPLODING, "--config", clean_environment / "missing.toml")
    assert code == 2 and "missing.toml" in err
    empty = clean_environment / "empty.toml"
    empty.write_text("[tool.other]\nx = 1\n")
    code, _, err = cli("check", EXPLODING, "--config", empty)
    assert code == 2 and "[tool.gradaudit]" in err


def test_precedence_cli_over_environment_over_config(cli, clean_environment, monkeypatch):
    write_config(clean_environment, 'fail-on = "never"')
    assert cli("check", EXPLODING, "--static-only")[0] == 0
    assert cli("check", EXPLODING, "--static-only", "--fail-on", "error")[0] == 1  # CLI over config
    monkeypatch.setenv("GRADAUDIT_FAIL_ON", "error")
    assert cli("check", EXPLODING, "--static-only")[0] == 1  # environment over config
    assert cli("check", EXPLODING, "--static-only", "--fail-on", "never")[0] == 0  # CLI over environment


@pytest.mark.parametrize(
    "body, key",
    [
        ('fail-onn = "error"', "fail-onn"),
        ('fail-on = "sometimes"', "fail-on"),
        ('passes = "three"', "passes"),
        ("passes = 0", "passes"),
        ("batch = 0", "batch"),
        ("timeout = 0.5", "timeout"),
        ("seed = 1.5", "seed"),
        ("static-only = 1", "static-only"),
        ("measured-warn-decades = -1", "measured-warn-decades"),
        ('predicted-fail-decades = "2"', "predicted-fail-decades"),
        ('ignore = ["GA999"]', "ignore"),
        ('ignore = "GA301"', "ignore"),
        ('per-layer-ignores = {"/0/*" = "GA301"}', "per-layer-ignores"),
        ('per-layer-ignores = {"/0/*" = ["GA99"]}', "per-layer-ignores"),
        ('input-shape = ["8,x"]', "input-shape"),
        ("input-shape = [[8, 0]]", "input-shape"),
    ],
)
def test_unknown_keys_and_bad_values_are_errors_naming_the_key(cli, clean_environment, body, key):
    write_config(clean_environment, body)
    code, out, err = cli("check", HEALTHY, "--static-only")
    assert code == 2 and out == ""
    assert f"'{key}'" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize(
    "name, value",
    [("GRADAUDIT_PASSES", "many"), ("GRADAUDIT_STATIC_ONLY", "maybe"), ("GRADAUDIT_IGNORE", "GA1O1"),
     ("GRADAUDIT_FAIL_ON", "sometimes"), ("GRADAUDIT_PER_LAYER_IGNORES", "x")],
)
def test_bad_environment_values_are_errors_naming_the_variable(cli, monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    code, _, err = cli("check", HEALTHY, "--static-only")
    assert code == 2 and name in err and "Traceback" not in err, err


def test_malformed_toml_is_an_input_error(cli, clean_environment):
    (clean_environment / "pyproject.toml").write_text("[tool.gradaudit\nfail-on = 'never'\n")
    code, _, err = cli("check", HEALTHY, "--static-only")
    assert code == 2 and "pyproject.toml" in err


def test_fail_on_and_ignore_from_config(cli, clean_environment):
    """With its error codes ignored the ReLU stack keeps only warnings: it passes at fail-on
    error and fails at fail-on warning."""
    write_config(clean_environment, 'ignore = ["GA102", "GA104", "GA201"]')
    code, out, _ = cli("check", VANISHING_RELU, "--format", "json")
    assert code == 0
    assert finding_codes(out) == {"GA301", "GA401"}
    write_config(clean_environment, 'ignore = ["GA102", "GA104", "GA201"]\nfail-on = "warning"')
    assert cli("check", VANISHING_RELU, "--quiet")[0] == 1


def test_thresholds_from_config(cli, clean_environment):
    assert {"GA102", "GA104", "GA201"} <= finding_codes(cli("check", VANISHING_SIGMOID, "--format", "json")[1])
    write_config(clean_environment, "measured-warn-decades = 10\nmeasured-fail-decades = 10")
    code, out, _ = cli("check", VANISHING_SIGMOID, "--format", "json")
    assert code == 1 and finding_codes(out) == {"GA102", "GA201"}  # only the measured rule moved
    write_config(clean_environment, "\n".join(f"{kind}-{level}-decades = 10"
                                              for kind in ("predicted", "measured", "init")
                                              for level in ("warn", "fail")))  # GA201 has its own levels
    code, out, _ = cli("check", VANISHING_SIGMOID, "--format", "json")
    assert code == 0 and finding_codes(out) == set()


def test_per_layer_ignores_glob(cli, clean_environment):
    write_config(clean_environment, 'per-layer-ignores = {"/*/Gemm" = ["GA401"]}')
    codes = finding_codes(cli("check", VANISHING_RELU, "--format", "json")[1])
    assert "GA401" not in codes and "GA301" in codes  # the glob drops only the codes it lists
    write_config(clean_environment, 'per-layer-ignores = {"/1*/Gemm" = ["GA401"]}')
    assert "GA401" in finding_codes(cli("check", VANISHING_RELU, "--format", "json")[1])


FACTORY = """import torch

def build():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
"""


def test_input_shape_from_config_and_environment(cli, clean_environment, monkeypatch):
    (clean_environment / "net.py").write_text(FACTORY)
    code, _, err = cli("check", "net.py:build", "--static-only")
    assert code == 2 and "--input-shape" in err
    write_config(clean_environment, 'input-shape = ["8,10"]')
    assert cli("check", "net.py:build", "--static-only")[0] == 0
    write_config(clean_environment, "input-shape = [[8, 7]]")
    assert cli("check", "net.py:build", "--static-only")[0] == 2  # the wrong width reaches the model
    monkeypatch.setenv("GRADAUDIT_INPUT_SHAPE", "8,10")
    assert cli("check", "net.py:build", "--static-only")[0] == 0


def _without_timing(json_text: str) -> dict:
    report = json.loads(json_text)
    report.pop("timing")
    return report


def test_passes_and_seed_from_config(cli, clean_environment):
    write_config(clean_environment, "passes = 2\nseed = 7")
    from_config = json.loads(cli("check", HEALTHY, "--format", "json")[1])
    assert from_config["gradient_flow"]["dynamic"]["passes"] == 2
    (clean_environment / "pyproject.toml").unlink()
    from_flags = json.loads(cli("check", HEALTHY, "--format", "json", "--passes", "2", "--seed", "7")[1])
    default_seed = json.loads(cli("check", HEALTHY, "--format", "json", "--passes", "2")[1])
    for report in (from_config, from_flags, default_seed):
        report.pop("timing")
    assert from_config == from_flags
    assert from_config["gradient_flow"]["dynamic"] != default_seed["gradient_flow"]["dynamic"]


def test_static_only_from_config(cli, clean_environment):
    write_config(clean_environment, "static-only = true")
    report = json.loads(cli("check", HEALTHY, "--format", "json")[1])
    assert report["gradient_flow"]["dynamic"] is None


def test_baseline_from_config_is_relative_to_the_config_file(cli, clean_environment, monkeypatch):
    model = clean_environment / "model.onnx"
    model.write_bytes(EXPLODING.read_bytes())
    assert cli("baseline", model, "-o", clean_environment / "gate" / "base.json")[0] == 2  # no such folder
    (clean_environment / "gate").mkdir()
    assert cli("baseline", model, "-o", clean_environment / "gate" / "base.json")[0] == 0
    write_config(clean_environment, 'baseline = "gate/base.json"')
    sub = clean_environment / "sub"
    sub.mkdir()
    monkeypatch.chdir(sub)
    assert cli("check", model, "--static-only")[0] == 0
    write_config(clean_environment, 'baseline = "gate/missing.json"')
    code, _, err = cli("check", model, "--static-only")
    assert code == 2 and "missing.json" in err


def test_settings_are_typed_and_resolved_in_precedence_order(clean_environment):
    write_config(clean_environment, 'passes = 5\nseed = 2\nbatch = 4\ninput-shape = ["4,3"]\n'
                                    'measured-warn-decades = 2.5\nignore = ["GA301"]')
    settings = resolve_settings({"seed": 7, "trust": None}, environ={"GRADAUDIT_BATCH": "16"})
    assert (settings.passes, settings.seed, settings.batch) == (5, 7, 16)  # config, flag, environment
    assert settings.input_shapes == ((4, 3),)
    assert settings.rule_config.measured_warn_decades == pytest.approx(2.5)
    assert settings.rule_config.ignore == ["GA301"]
    assert (settings.fail_on, settings.trust, settings.max_memory, settings.verify) == ("error", False, None, False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.seed = 1  # type: ignore[misc]


def test_fix_honours_the_config(cli, clean_environment):
    """`fix` reads the pyproject as `check` does: the fixed exploding MLP keeps a GA401 warning,
    which fails at a configured fail-on warning and passes once the configured ignore drops it."""
    write_config(clean_environment, 'fail-on = "warning"')
    code, _, err = cli("fix", EXPLODING, "-o", clean_environment / "fixed.onnx", "--timeout", "3000")
    assert code == 1 and "exploding -> healthy, verdict warn" in err, err
    config = write_config(clean_environment, 'fail-on = "warning"\nignore = ["GA401"]', name="gate.toml")
    code, _, err = cli("fix", EXPLODING, "-o", clean_environment / "again.onnx", "--config", config,
                       "--timeout", "3000")
    assert code == 0 and "exploding -> healthy, verdict pass" in err, err


def test_verify_refines_under_the_configured_ignores(cli, clean_environment):
    """Verification re-runs the rules under the user's config. By default the sigmoid MLP's rescale
    is refined over 2 rounds, because the rescaled copy still shows GA201 (its own rescale); with
    GA201 ignored the copy calls for no further rescale, so the change is judged as first made."""
    write_config(clean_environment, 'ignore = ["GA201"]')
    code, out, _ = cli("check", VANISHING_SIGMOID, "--verify", "--format", "json", "--timeout", "3000")
    rescales = [r for r in json.loads(out)["recommendations"] if r["change"] == "rescale"]
    assert rescales and all(r["verified"]["rounds"] == 1 and "refined" not in r["action"] for r in rescales)
