"""Static-estimator tests run torch on one thread: their tensors are small, and on a shared
machine extra OpenMP threads spin-wait far longer than the work takes."""

import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
