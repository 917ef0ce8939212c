"""A pytest helper so teams can gate their own test suites on gradient health.

    from gradaudit.testing import assert_gradients_healthy

    def test_model_trains():
        assert_gradients_healthy(build_model(), torch.randn(16, 3, 32, 32))
"""

from __future__ import annotations

from typing import Any

from gradaudit.gate import FAIL_ON_CHOICES
from gradaudit.results import Audit, Severity


def assert_gradients_healthy(model: Any, example_inputs: Any, *, fail_on: str = "error", **options: Any) -> Audit:
    """Audit `model` and raise AssertionError listing the findings when it is not healthy.

    Fails when the diagnosis is exploding or vanishing, or when any finding is at or above
    `fail_on` ("error" | "warning"). Other keyword options go to `gradaudit.audit`. Returns the
    audit so a test can assert more.
    """
    if fail_on not in FAIL_ON_CHOICES or fail_on == "never":
        raise ValueError(f"fail_on must be 'error' or 'warning', not {fail_on!r}")
    from gradaudit.pipeline import audit

    result = audit(model, example_inputs, **options)
    threshold = Severity.rank(fail_on)
    failing = [f for f in result.findings if Severity.rank(f.severity) >= threshold]
    if result.diagnosis.label == "healthy" and not failing:
        return result
    lines = [f"gradients are {result.diagnosis.label} (verdict {result.verdict})"]
    lines += [f"  - {reason}" for reason in result.diagnosis.reasons]
    for finding in failing:
        where = (f" [{', '.join(finding.layers[:3])}{', ...' if len(finding.layers) > 3 else ''}]" if finding.layers
                 else "")
        lines.append(f"  {finding.code} {finding.severity}: {finding.message}{where}")
    for rec in result.recommendations[:5]:
        lines.append(f"  fix ({rec.remedy}): {rec.action}")
    raise AssertionError("\n".join(lines))
