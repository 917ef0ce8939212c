"""The pre-commit hook: run its `entry` on a list of staged files the way pre-commit does."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

from tests.gate.conftest import EXPLODING, HEALTHY, ROOT


def _hook() -> dict:
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert [h["id"] for h in hooks] == ["gradaudit"]
    return hooks[0]


def _installed_command(folder: Path) -> dict[str, str]:
    """An environment whose PATH has a `gradaudit` console script, as pre-commit's venv would."""
    script = folder / "gradaudit"
    script.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(ROOT)!r})\n"
                      "from gradaudit.cli import entry_point\nentry_point()\n")
    script.chmod(0o755)
    return {**os.environ, "PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}


def test_hook_entry_runs_on_the_matching_staged_files(tmp_path):
    hook = _hook()
    assert hook["language"] == "python" and hook["pass_filenames"] is True
    staged = [str(HEALTHY), str(EXPLODING), "README.md", "samples/export_onnx.py"]
    matching = [name for name in staged if re.search(hook["files"], name)]
    assert matching == [str(HEALTHY), str(EXPLODING)]
    proc = subprocess.run(shlex.split(hook["entry"]) + hook.get("args", []) + matching, capture_output=True,
                          text=True, cwd=ROOT, env=_installed_command(tmp_path), timeout=300)
    assert proc.returncode == 1, proc.stderr  # the exploding model blocks the commit
    assert "healthy" in proc.stdout and "exploding" in proc.stdout
