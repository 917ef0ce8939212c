"""The README's "Use in CI" section: its copy-paste config and YAML work as printed."""

from __future__ import annotations

import re

import yaml

from gradaudit.config import all_options
from tests.gate.conftest import HEALTHY, ROOT


def _blocks(language: str) -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Use in CI", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.S)


def test_copy_paste_config_is_accepted_and_names_every_option(cli, clean_environment):
    (config,) = _blocks("toml")
    (clean_environment / "pyproject.toml").write_text(config)
    assert cli("check", HEALTHY, "--static-only")[0] == 0
    documented = set(re.findall(r"^#? ?([a-z-]+) =", config, flags=re.M))
    assert documented == set(all_options())


def test_actions_job_and_pre_commit_config_are_valid_yaml():
    job, pre_commit = (yaml.safe_load(block) for block in _blocks("yaml"))
    steps = job["jobs"]["gradient-gate"]["steps"]
    assert any("gradaudit check" in step.get("run", "") and "--sarif" in step["run"] for step in steps)
    assert pre_commit["repos"][0]["hooks"][0]["entry"] == "gradaudit check"
