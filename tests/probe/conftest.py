"""Probe tests: each starts from the same global RNG state; models come from tests/probe/sequential.py."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(1234)
