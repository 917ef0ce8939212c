"""Shared pytest setup: import the package from this checkout, keep torch to few threads."""

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

torch.set_num_threads(2)


@pytest.fixture
def strict_static(monkeypatch):
    """A failing gain or ONNX mapping raises instead of leaving its node unknown: for tests whose
    models gradaudit fully supports, where such a failure is a bug GA501 would only mention."""
    from gradaudit.errors import STRICT_STATIC_ENV

    monkeypatch.setenv(STRICT_STATIC_ENV, "1")
