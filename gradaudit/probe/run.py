"""The dynamic probe: k real forward+backward passes on a copy of the model.

It never touches the user's module: it deep-copies it, puts the copy in train mode (BatchNorm uses
batch statistics, as in the first training step) with every Dropout switched off (noise would blur
the measurement); a module gradaudit built itself (the ONNX executor, already so) runs as it is,
its weights left where they are mapped. It seeds its own generators inside `torch.random.fork_rng`, so the caller's RNG
state is unchanged. Gradients come from `torch.autograd.grad`, so no `.grad` is ever written.
Only the extra work an output field needs is done per pass: statistics on the captured tensors, one
autograd call per recurrent node (reusing the pass's graph), and, when asked for, Hessian-vector
products for the sharpness.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from dataclasses import dataclass
from typing import Any, Collection, Iterator, Sequence

import torch
from torch import nn

from gradaudit.errors import GradauditError, InputError
from gradaudit.graph import normalisation_eps, weight_positions
from gradaudit.loaders.torch_graph import first_tensor
from gradaudit.model import ModelHandle, Runner
from gradaudit.probe.batches import BatchSource, as_batch, describe, float_moments
from gradaudit.probe.objective import Objective, objective_for, output_tensors
from gradaudit.probe.plan import CapturePlan, plan_capture
from gradaudit.probe.sharpness import exact_hvp, finite_difference_hvp, largest_eigenvalue, random_direction
from gradaudit.probe.tally import NodeStats, PassRecord, combine
from gradaudit.probe.through_time import log10_time_ratio
from gradaudit.probe.units import activation_stats, l2_norm, moments
from gradaudit.results import ProbeResult

# Modules whose only train-mode behaviour is dropout; switched to eval so the probe sees no noise.
DROPOUT_MODULES = (nn.modules.dropout._DropoutNd, nn.MultiheadAttention)
# Errors a forward pass raises on inputs the model cannot take (shape, dtype, argument count).
FORWARD_ERRORS = (RuntimeError, TypeError, ValueError, IndexError, KeyError)


def training_copy(module: nn.Module) -> nn.Module:
    """A deep copy in train mode with dropout off."""
    model = copy.deepcopy(module)
    model.train()
    for sub in model.modules():
        if isinstance(sub, DROPOUT_MODULES):
            sub.eval()
    return model


@dataclass
class _Context:
    """Everything a pass needs, fixed for the whole probe."""

    handle: ModelHandle
    runner: Runner
    model: nn.Module
    plan: CapturePlan
    objective: Objective
    batches: BatchSource
    trainable: list[torch.Tensor]
    slot_of: dict[str, int | None]  # weight parameter name -> index in `trainable` (None: frozen)
    computed: list[str]  # weights the model computes from its parameters (`_parameters`), by tensor name
    sharpness: bool  # estimate the largest Hessian eigenvalue

    @property
    def capture(self) -> set[str]:
        return self.plan.capture | set(self.computed)


def _parameters(handle: ModelHandle, model: nn.Module, plan: CapturePlan
                ) -> tuple[list[torch.Tensor], dict[str, int | None], list[str], dict[str, float]]:
    """Trainable parameters, where each weight layer's tensor sits among them, the weights the
    model computes instead, and weight RMS.

    A computed weight is one an ONNX graph builds from several initializers (a bidirectional
    LSTM's W is Concat(forward W, reverse W)): no single parameter has the layer's gradient, so
    the probe differentiates the computed tensor itself, which the runner hands back by name.
    Its RMS is the loader's statistic of that tensor."""
    named = dict(model.named_parameters(remove_duplicate=False))
    trainable = [p for p in dict.fromkeys(model.parameters()) if p.requires_grad]
    index = {id(p): i for i, p in enumerate(trainable)}
    slot_of: dict[str, int | None] = {}
    computed: list[str] = []
    weight_rms: dict[str, float] = {}
    for layer in plan.weights:
        param = named.get(layer.param)
        if param is None:
            computed.append(layer.param)
            weight_rms[layer.param] = handle.graph.nodes[layer.node]["params"][layer.role].rms
            continue
        slot_of[layer.param] = index.get(id(param))
        weight_rms[layer.param] = l2_norm(param) / math.sqrt(param.numel()) if param.numel() else 0.0
    return trainable, slot_of, computed, weight_rms


def _one_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _forward(ctx: _Context, inputs: Sequence[Any], seed: int,
             capture: Collection[str]) -> tuple[Any, dict[str, Any], torch.Tensor]:
    """Run the model and its loss; an input it cannot take is the user's error, in one line."""
    try:
        outputs, captured = ctx.runner(ctx.model, inputs, capture)
    except FORWARD_ERRORS as exc:
        raise InputError(f"the forward pass failed on inputs {describe(inputs)}: {_one_line(exc)}") from exc
    try:
        loss = ctx.objective.compute(outputs, inputs, seed)
    except FORWARD_ERRORS as exc:
        raise InputError(f"the loss failed on the model's outputs: {_one_line(exc)}") from exc
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise InputError(f"the loss must be a single-element tensor, got {shape}")
    return outputs, captured, loss.reshape(())


def _node_stats(ctx: _Context, captured: dict[str, Any], with_units: bool) -> dict[str, NodeStats]:
    """Output moments of every weight node; with `with_units`, dead/saturated fractions too."""
    stats = {}
    for node in ctx.plan.weight_nodes:
        y = first_tensor(captured.get(node))
        if y is None or not torch.is_floating_point(y):
            continue
        mean, std, finite = moments(y)
        stats[node] = NodeStats(mean, std, finite)
        site = ctx.plan.activations.get(node)
        z = first_tensor(captured.get(site.input_node)) if site else None
        if with_units and finite and z is not None:
            stats[node].dead_frac, stats[node].saturated_frac = activation_stats(site, z)
    return stats


def _recurrent_ratios(ctx: _Context, inputs: Sequence[Any], captured: dict[str, Any], seed: int) -> dict[str, float]:
    ratios = {}
    generator = torch.Generator().manual_seed(seed)
    for site in ctx.plan.recurrent:
        x = inputs[site.input_slot] if site.input_slot is not None else first_tensor(captured.get(site.source))
        y = first_tensor(captured.get(site.node))
        if isinstance(x, torch.Tensor) and y is not None:
            ratio = log10_time_ratio(site, x, y, generator)
            if ratio is not None:
                ratios[site.name] = ratio
    return ratios


def _computed_weights(ctx: _Context, captured: dict[str, Any]) -> list[torch.Tensor | None]:
    """The computed weights of this pass (`_parameters`); None for one no parameter feeds."""
    tensors = []
    for name in ctx.computed:
        tensor = captured.get(name)
        if not isinstance(tensor, torch.Tensor):
            layer = next(w.layer for w in ctx.plan.weights if w.param == name)
            raise GradauditError(f"parameter {name!r} of layer {layer!r} is not in the module")
        tensors.append(tensor if tensor.requires_grad else None)
    return tensors


def _gradients(ctx: _Context, loss: torch.Tensor, targets: Sequence[torch.Tensor | None], keep_graph: bool
               ) -> list[torch.Tensor | None]:
    """d loss / d target for each target (None where the loss does not reach it or it is None)."""
    wanted = [(i, t) for i, t in enumerate(targets) if t is not None]
    grads: list[torch.Tensor | None] = [None] * len(targets)
    if not wanted or not loss.requires_grad:
        return grads
    found = torch.autograd.grad(loss, [t for _, t in wanted], allow_unused=True, create_graph=keep_graph)
    for (i, _), grad in zip(wanted, found):
        grads[i] = grad
    return grads


def _first_nonfinite(ctx: _Context, nodes: dict[str, NodeStats], grad_finite: dict[str, bool]) -> str | None:
    """Where non-finite values start: the first layer (forward order) whose output is non-finite;
    failing that, the last layer whose gradient is (the backward pass runs in reverse order, so
    that is where it overflowed); failing that, the model output."""
    graph = ctx.handle.graph
    for node in ctx.plan.weight_nodes:
        if node in nodes and not nodes[node].finite:
            return graph.nodes[node]["name"]
    bad = [w.layer for w in ctx.plan.weights if not grad_finite[w.param]]
    if bad:
        return bad[-1]
    outputs = graph.graph.get("outputs", [])
    return graph.nodes[outputs[0]]["name"] if outputs else None


def _output_ms(outputs: Any) -> tuple[float | None, bool]:
    """Mean square of the first float output, and whether every output is finite."""
    tensors = [t.detach() for t in output_tensors(outputs) if torch.is_floating_point(t)]
    finite = all(bool(torch.isfinite(t).all()) for t in tensors)
    if not tensors or not tensors[0].numel():
        return None, finite
    return l2_norm(tensors[0]) ** 2 / tensors[0].numel(), finite


def _gradient_scales(ctx: _Context, grads: Sequence[torch.Tensor | None], computed: Sequence[torch.Tensor | None],
                     computed_grads: Sequence[torch.Tensor | None]) -> tuple[dict[str, float], dict[str, bool], float]:
    """Per weight layer: mean square of the gradient and its finiteness; the global squared norm
    (of the parameters' gradients: a computed weight's is already in its sources').
    A frozen parameter or one the loss does not reach has gradient 0."""
    norms_sq = [l2_norm(g) ** 2 if g is not None else 0.0 for g in grads]
    grad_ms, grad_finite = {}, {}
    for name, tensor, grad in zip(ctx.computed, computed, computed_grads):
        norm_sq = l2_norm(grad) ** 2 if grad is not None else 0.0
        grad_ms[name] = norm_sq / max(tensor.numel(), 1) if tensor is not None else 0.0
        grad_finite[name] = math.isfinite(norm_sq)
    for layer in ctx.plan.weights:
        if layer.param in grad_ms:
            continue
        slot = ctx.slot_of[layer.param]
        norm_sq = norms_sq[slot] if slot is not None else 0.0
        grad_ms[layer.param] = norm_sq / max(ctx.trainable[slot].numel(), 1) if slot is not None else 0.0
        grad_finite[layer.param] = math.isfinite(norm_sq)
    return grad_ms, grad_finite, sum(norms_sq)


def _sharpness(ctx: _Context, grads: Sequence[torch.Tensor | None], inputs: Sequence[Any], seed: int) -> float:
    """Largest Hessian eigenvalue on this pass's batch: exact Hessian-vector products when every
    op has a double backward, else central differences of gradients on the same batch."""
    used = [(g, p) for g, p in zip(grads, ctx.trainable) if g is not None]
    params = [p for _, p in used]
    start = random_direction(params, torch.Generator().manual_seed(seed))
    try:
        return largest_eigenvalue(exact_hvp([g for g, _ in used], params), start)
    except RuntimeError:  # "derivative for ... is not implemented": no double backward

        def gradient_at() -> list[torch.Tensor]:
            loss = _forward(ctx, inputs, seed, ())[2]
            found = torch.autograd.grad(loss, params, allow_unused=True)
            return [torch.zeros_like(p) if g is None else g for g, p in zip(found, params)]

        return largest_eigenvalue(finite_difference_hvp(gradient_at, params), start)


def _measure_pass(ctx: _Context, pass_seed: int, first_pass: bool) -> PassRecord:
    """One forward+backward pass. Unit statistics, the through-time ratios and sharpness are taken on
    the first pass only: phi' over every activation and the extra backward per recurrent layer are
    the probe's costliest statistics, and dead or saturated fractions and the per-step Jacobian
    product are properties of the initialisation that barely move between batches."""
    want_sharpness = ctx.sharpness and first_pass
    inputs = ctx.batches.draw(pass_seed, ctx.plan.inputs_need_grad)
    outputs, captured, loss = _forward(ctx, inputs, pass_seed, ctx.capture)
    recurrent = _recurrent_ratios(ctx, inputs, captured, pass_seed) if first_pass else {}
    computed = _computed_weights(ctx, captured)
    all_grads = _gradients(ctx, loss, [*ctx.trainable, *computed], want_sharpness)
    grads, computed_grads = all_grads[: len(ctx.trainable)], all_grads[len(ctx.trainable) :]
    grad_ms, grad_finite, grad_norm_sq = _gradient_scales(ctx, grads, computed, computed_grads)
    nodes = _node_stats(ctx, captured, with_units=first_pass)
    output_ms, outputs_finite = _output_ms(outputs)
    finite = outputs_finite and math.isfinite(float(loss.detach())) and math.isfinite(grad_norm_sq)
    nonfinite = not finite or any(not s.finite for s in nodes.values())
    return PassRecord(
        grad_ms=grad_ms,
        nodes=nodes,
        output_ms=output_ms,
        nonfinite=nonfinite,
        first_nonfinite=_first_nonfinite(ctx, nodes, grad_finite) if nonfinite else None,
        grad_norm_sq=grad_norm_sq,
        input_moments=float_moments(inputs),
        recurrent=recurrent,
        sharpness=_sharpness(ctx, grads, inputs, pass_seed) if want_sharpness and not nonfinite else None,
    )


def _context(handle: ModelHandle, data: tuple | None, sharpness: bool,
             loss: str = "auto") -> tuple[_Context, dict[str, float]]:
    if handle.module is None or handle.runner is None or handle.probe_unavailable:
        raise InputError(handle.probe_unavailable or f"{handle.source} cannot be executed, so it cannot be probed")
    plan = plan_capture(handle.graph)
    model = handle.module if handle.module_is_own else training_copy(handle.module)
    trainable, slot_of, computed, weight_rms = _parameters(handle, model, plan)
    device = next(model.parameters(), torch.empty(0)).device
    batches = BatchSource(handle, as_batch(data), device)
    objective = objective_for(handle.graph, handle.loss_fn, loss)
    ctx = _Context(handle, handle.runner, model, plan, objective, batches, trainable, slot_of, computed, sharpness)
    return ctx, weight_rms


@contextlib.contextmanager
def seeded_rng(device: torch.device, seed: int) -> Iterator[None]:
    """Seed the generators the model may draw from (CPU, and its own GPU), restoring the caller's
    state afterwards; torch.manual_seed would also reseed every other GPU."""
    gpus = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=gpus):
        torch.default_generator.manual_seed(seed)
        for gpu in gpus:
            torch.cuda.default_generators[gpu].manual_seed(seed)
        yield


def run_probe(
    handle: ModelHandle,
    *,
    passes: int = 3,
    seed: int = 0,
    data: tuple | None = None,
    sharpness: bool = False,
    timeout: float | None = None,
    loss: str = "auto",
) -> ProbeResult:
    """Measure gradient flow with `passes` real forward+backward passes (fewer if `timeout`
    seconds run out; at least one always runs) under the loss `loss` (gradaudit.config.LOSSES)."""
    if passes < 1:
        raise ValueError("the probe needs at least one pass")
    started = time.perf_counter()
    ctx, weight_rms = _context(handle, data, sharpness, loss)
    records: list[PassRecord] = []
    with seeded_rng(ctx.batches.device, seed):
        for index in range(passes):
            if records and timeout is not None and time.perf_counter() - started > timeout:
                break
            records.append(_measure_pass(ctx, seed + index, first_pass=not records))
    positions = {node: weight_positions(handle.graph, node) for node in ctx.plan.weight_nodes}
    norm_eps = {node: eps for node in ctx.plan.weight_nodes
                if (eps := normalisation_eps(handle.graph, node)) is not None}
    return combine(ctx.plan, records, weight_rms, ctx.objective.label, time.perf_counter() - started, positions,
                   norm_eps)
