"""`--lang zh` end to end: the terminal and HTML reports in Simplified Chinese, English keys and
codes in JSON, `explain`, `lang` in [tool.gradaudit], the Python API, and a bad value."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import torch

import gradaudit
from gradaudit.cli import main

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
UNHEALTHY = SAMPLES / "exploding_residual_stack.onnx"


@pytest.fixture(scope="module")
def zh_check(tmp_path_factory):
    """One `check --lang zh` of the exploding sample: exit code, stdout, HTML and JSON."""
    folder = tmp_path_factory.mktemp("zh")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["check", str(UNHEALTHY), "--lang", "zh", "--html", str(folder / "r.html"),
                     "--json", str(folder / "r.json")])
    return code, out.getvalue(), (folder / "r.html").read_text(encoding="utf-8"), \
        json.loads((folder / "r.json").read_text(encoding="utf-8"))


def test_text_report_in_chinese(zh_check):
    code, text, _, _ = zh_check
    assert code == 1
    assert "失败  梯度流：梯度爆炸" in text
    assert "建议（" in text and "批量归一化: " in text and "自适应学习率调整: " in text
    assert "GA103" in text and "/blocks/blocks.1/linear/Gemm" in text  # codes and layer names as they are
    assert "Recommendations" not in text and "gradient flow:" not in text


def test_html_report_in_chinese(zh_check):
    _, _, html, _ = zh_check
    assert '<html lang="zh">' in html
    assert '<span class="verdict">失败</span>' in html and "<strong>梯度爆炸</strong>" in html
    assert "<h2>怎么做</h2>" in html and "批量归一化" in html and "自适应学习率调整" in html
    assert "What to do" not in html and "Findings (" not in html
    words = html.split('class="gradaudit-words">', 1)[1].split("</script>", 1)[0]
    assert json.loads(words)["copy"] == "复制"  # the chart and buttons speak it too


def test_json_keeps_english_keys_codes_and_contract_values(zh_check):
    _, _, _, report = zh_check
    assert report["verdict"] == "fail" and report["diagnosis"] == "exploding"
    assert {f["code"] for f in report["findings"]} >= {"GA103"}
    assert {r["remedy"] for r in report["recommendations"]} >= {"normalization", "lr_adaptation"}
    assert any("梯度爆炸" in f["message"] for f in report["findings"])


def test_bad_language_is_one_line_and_exit_2(capsys):
    assert main(["check", str(UNHEALTHY), "--lang", "fr"]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "--lang" in err and "en, zh" in err and "Traceback" not in err


def test_explain_in_chinese_from_the_flag_and_from_the_config(tmp_path, capsys, monkeypatch):
    assert main(["explain", "GA302", "--lang", "zh"]) == 0
    flag = capsys.readouterr().out
    assert flag.startswith("GA302 unnormalised-residual-accumulation (warning)\n没有归一化的残差求和")
    assert "检测内容" in flag and "修复方法" in flag and "What it detects" not in flag
    (tmp_path / "pyproject.toml").write_text('[tool.gradaudit]\nlang = "zh"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert main(["explain", "GA302"]) == 0
    assert capsys.readouterr().out == flag
    assert main(["rules"]) == 0
    assert "静态估计预测梯度朝输入方向增长。" in capsys.readouterr().out
    (tmp_path / "pyproject.toml").write_text('[tool.gradaudit]\nlang = "de"\n', encoding="utf-8")
    assert main(["explain", "GA302"]) == 2
    assert "'lang' must be one of en, zh" in capsys.readouterr().err


def test_python_api_audits_and_renders_in_the_language_asked():
    torch.manual_seed(0)
    layers = [torch.nn.Linear(16, 16) for _ in range(12)]
    model = torch.nn.Sequential(*[m for layer in layers for m in (layer, torch.nn.Sigmoid())])
    audit = gradaudit.audit(model, torch.randn(8, 16), lang="zh", passes=1)
    assert audit.language == "zh"
    html = audit.to_html()
    assert '<html lang="zh">' in html and "怎么做" in html
    assert "怎么做" in audit._repr_html_()
    assert json.loads(audit.to_json())["verdict"] in ("pass", "warn", "fail")
    english = gradaudit.audit(model, torch.randn(8, 16), passes=1)
    assert english.language == "en" and "What to do" in english.to_html()
