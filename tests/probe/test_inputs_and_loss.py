"""Where the probe's batches come from, and which loss it differentiates."""

import pytest
import torch
from torch import nn

from gradaudit.errors import InputError
from gradaudit.model import InputSpec
from gradaudit.probe import run_probe
from tests.probe.sequential import sequential_handle


class Embed(nn.Module):
    """Token ids -> mean embedding, to check integer inputs reach the model intact."""

    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Embedding(10, 4)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.table(ids).mean(dim=1)


def test_integer_spec_draws_ids_in_range():
    seen = []
    model = nn.Sequential(Embed(), nn.Linear(4, 2))
    handle = sequential_handle(model, (5, 7))
    handle.inputs = [InputSpec("ids", (5, 7), "int64", high=10)]
    model[0].register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    result = run_probe(handle, passes=2)
    assert all(x.dtype == torch.int64 and 0 <= int(x.min()) and int(x.max()) < 10 for x in seen)
    assert not torch.equal(seen[0], seen[1])  # exact: two draws of the RNG
    assert result.input_mean is None


def test_example_inputs_floats_redrawn_ints_kept():
    received = []

    class Probe(nn.Module):
        def forward(self, x, ids):
            received.append((x, ids))
            return x * ids

    example = (torch.full((3, 4), 7.0), torch.arange(12).reshape(3, 4))
    handle = sequential_handle(nn.Sequential(nn.Identity()), (3, 4))
    handle.module, handle.example_inputs = Probe(), example
    handle.runner = lambda module, inputs, capture: (module(*inputs), {})
    run_probe(handle, passes=1)
    x, ids = received[0]
    assert x.shape == (3, 4) and float(x.std()) > 0.1  # fresh N(0, 1), not the 7s
    assert torch.equal(ids, example[1])  # exact: integer ids, copied


def test_log_softmax_output_gets_nll_loss():
    model = nn.Sequential(nn.Linear(4, 5), nn.LogSoftmax(dim=-1))
    result = run_probe(sequential_handle(model, (8, 4)), passes=1)
    assert "negative log-likelihood" in result.loss


def test_model_loss_is_used_when_given():
    model = nn.Sequential(nn.Linear(4, 3))
    handle = sequential_handle(model, (8, 4))
    handle.loss_fn = lambda outputs, inputs: 1000.0 * outputs.sum()
    x = torch.randn(8, 4)
    result = run_probe(handle, passes=1, data=(x,))
    # d(1000 * sum(xW^T))/dW has every row equal to 1000 * x.sum(0)
    expected = float((1000.0 * x.sum(0)).norm() * (3 ** 0.5) / (12 ** 0.5))
    assert result.layers[0].grad_rms == pytest.approx(expected, rel=1e-5)
    assert result.loss == "model's own loss"


def test_loss_that_is_not_a_scalar_is_an_input_error():
    handle = sequential_handle(nn.Sequential(nn.Linear(4, 3)), (8, 4))
    handle.loss_fn = lambda outputs, inputs: outputs.sum(dim=0)
    with pytest.raises(InputError, match="single-element tensor, got \\(3,\\)"):
        run_probe(handle)
