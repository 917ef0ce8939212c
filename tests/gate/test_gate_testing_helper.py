"""`gradaudit.testing.assert_gradients_healthy`, the helper teams put in their own test suites."""

from __future__ import annotations

import pytest
import torch

from gradaudit.testing import assert_gradients_healthy
from samples import healthy_mlp_kaiming, vanishing_sigmoid_mlp


def test_passes_on_a_healthy_model_and_returns_the_audit():
    model, inputs = healthy_mlp_kaiming.build()
    audit = assert_gradients_healthy(model, inputs)
    assert audit.diagnosis.label == "healthy" and audit.verdict == "pass"


def test_raises_listing_the_findings_on_an_unhealthy_model():
    model, inputs = vanishing_sigmoid_mlp.build()
    with pytest.raises(AssertionError) as raised:
        assert_gradients_healthy(model, inputs)
    message = str(raised.value)
    assert message.startswith("gradients are vanishing")
    for code in ("GA102", "GA104", "GA201"):
        assert f"{code} error" in message
    assert "fix (" in message  # the recommendations follow the findings


def test_fail_on_warning_also_fails_on_warnings():
    """A quarter of the first layer's units switched off (bias -20): gradient flow stays healthy,
    the dead units are a warning — fine at fail_on 'error', failing at 'warning'."""
    model, inputs = healthy_mlp_kaiming.build()
    first = model[0]
    with torch.no_grad():
        first.bias[: first.out_features // 4] = -20.0
    audit = assert_gradients_healthy(model, inputs)
    assert [(f.code, f.severity) for f in audit.findings] == [("GA401", "warning")]
    with pytest.raises(AssertionError, match="GA401 warning"):
        assert_gradients_healthy(model, inputs, fail_on="warning")
    with pytest.raises(ValueError, match="fail_on"):
        assert_gradients_healthy(model, inputs, fail_on="never")
