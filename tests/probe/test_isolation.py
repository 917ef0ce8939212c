"""The probe never changes the user's module or RNG, and measures in train mode without dropout."""

import pytest
import torch
from torch import nn

from gradaudit.errors import InputError
from gradaudit.probe import run_probe
from tests.probe.sequential import sequential_handle


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_user_module_and_rng_untouched():
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 2))
    model.eval()
    before = _snapshot(model)
    rng = torch.get_rng_state()
    run_probe(sequential_handle(model, (16, 6)), sharpness=True)
    assert not model.training and not any(m.training for m in model.modules())
    assert all(torch.equal(before[k], v)
               for k, v in model.state_dict().items())  # BN running stats too; exact: nothing may be written
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), rng)  # exact: RNG state bytes


def test_batchnorm_uses_batch_statistics():
    # running variance 1e-8 would blow the output up 10^4-fold in eval mode; batch statistics keep it ~1
    model = nn.Sequential(nn.Linear(10, 10), nn.BatchNorm1d(10)).eval()
    model[1].running_var.fill_(1e-8)
    result = run_probe(sequential_handle(model, (64, 10)), passes=1)
    assert result.output_rms == pytest.approx(1.0, rel=0.05)


def test_dropout_is_switched_off():
    with_dropout = nn.Sequential(nn.Linear(6, 6), nn.Dropout(0.9), nn.Linear(6, 2))
    without = nn.Sequential(with_dropout[0], nn.Identity(), with_dropout[2])
    a = run_probe(sequential_handle(with_dropout, (8, 6)), passes=1)
    b = run_probe(sequential_handle(without, (8, 6)), passes=1)
    assert [layer.grad_rms for layer in a.layers] == pytest.approx([layer.grad_rms for layer in b.layers], rel=1e-6)


def test_forward_failure_is_one_line_input_error():
    model = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(5, 2))  # 4 -> 5 mismatch
    with pytest.raises(InputError) as info:
        run_probe(sequential_handle(model, (3, 6)))
    message = str(info.value)
    assert "\n" not in message and "(3, 6) float32" in message and "forward pass failed" in message


def test_timeout_stops_between_passes_after_one():
    result = run_probe(sequential_handle(nn.Sequential(nn.Linear(4, 4)), (2, 4)), passes=5, timeout=0.0)
    assert result.passes == 1
    assert result.seconds > 0


def test_unrunnable_model_raises_input_error():
    handle = sequential_handle(nn.Sequential(nn.Linear(4, 4)), (2, 4))
    handle.module, handle.probe_unavailable = None, "the ONNX file uses an unsupported operator"
    with pytest.raises(InputError, match="unsupported operator"):
        run_probe(handle)
