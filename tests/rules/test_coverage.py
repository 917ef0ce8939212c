"""GA5xx: partial static estimate, skipped probe."""

from gradaudit.rules import RuleConfig, run_rules
from tests.rules.fixtures import chain_static, mlp, probe_result, sequential_handle


def _only(handle, static, probe, code):
    return [f for f in run_rules(handle, static, probe) if f.code == code]


def test_ga501_partial_static_estimate():
    handle = sequential_handle(mlp(16, 2))
    static = chain_static(handle)
    assert not _only(handle, static, None, "GA501")
    static.unknown_ops, static.partial = ["NonMaxSuppression", "NonMaxSuppression"], True
    (finding,) = _only(handle, static, None, "GA501")
    assert finding.severity == "warning" and finding.evidence["unknown_ops"] == ["NonMaxSuppression"]
    assert "NonMaxSuppression" in finding.message
    assert "did not run" in _only(handle, None, None, "GA501")[0].message


def test_ga501_is_a_note_where_the_probe_ran():
    """The gate follows the measurement where the probe ran: a partial estimate is then the
    tool's gap, not the model's (GPT-2, Llama, T5, ... factory routes warned for it)."""
    handle = sequential_handle(mlp(16, 2))
    static = chain_static(handle)
    static.unknown_ops, static.partial = ["cumsum"], True
    (finding,) = _only(handle, static, probe_result(handle), "GA501")
    assert finding.severity == "info" and "cumsum" in finding.message


def test_ga502_probe_skipped():
    handle = sequential_handle(mlp(16, 2))
    assert _only(handle, None, None, "GA502")[0].severity == "info"
    handle.probe_unavailable = "unsupported ONNX operator(s): Foo"
    (finding,) = _only(handle, None, None, "GA502")
    assert finding.severity == "warning" and "Foo" in finding.message
    assert not _only(handle, None, probe_result(handle), "GA502")


def test_ga504_fewer_than_two_weight_layers_fail_the_gate():
    handle = sequential_handle(mlp(16, 1))
    (finding,) = _only(handle, chain_static(handle), probe_result(handle), "GA504")
    assert finding.severity == "error" and finding.evidence["found"] == 1 and "1 weight layer" in finding.message
    two = sequential_handle(mlp(16, 2))
    assert not _only(two, chain_static(two), probe_result(two), "GA504")
    assert not [f for f in run_rules(handle, None, None, RuleConfig(ignore=["GA504"])) if f.code == "GA504"]
