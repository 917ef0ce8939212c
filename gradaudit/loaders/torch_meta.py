"""Static-only analysis of a PyTorch factory too big for memory: build on meta, replay each init.

`--static-only` needs the LayerGraph and each parameter's statistics, never the whole model at
once. The factory runs under `EmptyInit`:
- `torch.empty` (how nn.Linear, nn.Embedding, nn.ConvNd ... allocate before initialising) makes
  meta tensors, so no weight memory is taken;
- a parameter registered with real values (`nn.Parameter(torch.ones(d))`) has its statistics
  taken there and then, and is swapped for a meta copy;
- every in-place write to a parameter (`nn.init.kaiming_uniform_` inside `reset_parameters`, a
  loop over `model.modules()` calling `nn.init.normal_` after construction, `p.data.zero_()`) is
  recorded with its arguments;
- a deep copy of a parameter (nn.TransformerEncoder clones its initialised layer) starts with
  the writes its source had when copied.
Afterwards `replay_inits` walks the parameters in order of first write: each is materialised
on CPU alone, its recorded writes are replayed in order, its statistics are taken
(block by block, gradaudit.weight_stats.param_stats) and it is freed; peak memory is one parameter.
The graph comes from the concrete fx tracer run on meta inputs (shapes only, no values).

Limits, reported as notes on the handle: a write that reads another parameter's value (`copy_`
from a tied tensor, `mul_` of a constructor value) cannot be replayed on a lone parameter; the
parameter keeps the statistics of its last replayable state. Writes through views of a parameter
(`w[0].fill_(0)`, padding rows) are not seen. Replayed random inits draw from the same
distributions, not the same numbers. Row statistics are taken along axis 0, the output axis of
torch's Linear, Conv and Embedding weights. There is no probe: the model never holds real weights.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from gradaudit.errors import InputError
from gradaudit.graph import ParamStats
from gradaudit.limits import default_max_memory
from gradaudit.loaders.torch_graph import graph_from_trace
from gradaudit.loaders.torch_loader import input_specs, load_torch, resized_examples, synthesize_inputs
from gradaudit.loaders.torch_ops import module_rule
from gradaudit.loaders.torch_sources import call_factory, first_line, resolve_factory
from gradaudit.loaders.torch_trace import trace_concrete
from gradaudit.model import ModelHandle
from gradaudit.weight_stats import param_stats

EMPTY_FACTORIES = frozenset({torch.empty, torch.empty_strided, torch.empty_like})
ALIASING_CALLS = frozenset({"__get__", "detach", "detach_", "requires_grad_", "view_as"})
# Writes whose result does not depend on the tensor's previous value: a replay may start from them.
OVERWRITES = frozenset({"normal_", "uniform_", "fill_", "zero_", "zeros_", "ones_", "constant_", "copy_",
                        "trunc_normal_", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_",
                        "kaiming_normal_", "orthogonal_", "sparse_", "eye_", "dirac_", "random_",
                        "bernoulli_", "exponential_", "geometric_", "log_normal_", "cauchy_"})


def _name(func: Any) -> str:
    return getattr(func, "__name__", "")


@dataclass
class _Write:
    """One recorded in-place call: `func(*args, **kwargs)` with the parameter at `slot`."""

    func: Callable
    args: tuple
    kwargs: dict
    slot: int | str

    def replay(self, tensor: torch.Tensor) -> None:
        args, kwargs = list(self.args), dict(self.kwargs)
        if isinstance(self.slot, int):
            args[self.slot] = tensor
        else:
            kwargs[self.slot] = tensor
        with torch.no_grad():
            self.func(*args, **kwargs)


@dataclass
class _Record:
    """What EmptyInit knows of one meta parameter."""

    param: nn.Parameter
    stats: ParamStats | None = None  # from real values at registration
    writes: list[_Write] = field(default_factory=list)
    unreplayable: str = ""  # why a write could not be recorded for replay


class EmptyInit(TorchFunctionMode):
    """Run model construction without weight memory, recording how each parameter is set."""

    def __init__(self) -> None:
        super().__init__()
        self.records: dict[int, _Record] = {}  # id(meta parameter) -> record
        self.aliases: dict[int, int] = {}  # id(view of a parameter) -> id(parameter)
        self.order: list[int] = []  # parameter ids by first write
        self._keep: list[torch.Tensor] = []  # alias objects must outlive their ids

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = dict(kwargs or {})
        if func in EMPTY_FACTORIES and kwargs.get("device") is None:
            kwargs["device"] = "meta"
        target = self._target(args, kwargs)
        name = _name(func)
        out = func(*args, **kwargs)
        if target is not None:
            owner = self.aliases.get(id(args[0] if isinstance(target, int) else kwargs[target]))
            if owner is None:
                return out
            if name in ALIASING_CALLS and isinstance(out, torch.Tensor):
                self.aliases[id(out)] = owner
                self._keep.append(out)
            elif name.endswith("_") and not name.endswith("__"):
                self._record_write(owner, _Write(func, tuple(args), kwargs, target))
        return out

    def _target(self, args: tuple, kwargs: dict) -> int | str | None:
        """Where a tracked tensor sits in a call: first positional argument or `tensor=`."""
        if args and isinstance(args[0], torch.Tensor) and id(args[0]) in self.aliases:
            return 0
        if isinstance(kwargs.get("tensor"), torch.Tensor) and id(kwargs["tensor"]) in self.aliases:
            return "tensor"
        return None

    def _record_write(self, owner: int, write: _Write) -> None:
        """Keep a write for replay; the first one a lone parameter cannot replay freezes the record."""
        record = self.records[owner]
        if record.unreplayable:
            return
        tracked = write.args[write.slot] if isinstance(write.slot, int) else write.kwargs[write.slot]
        if any(
            isinstance(a, torch.Tensor) and a.is_meta and a is not tracked
            for a in (*write.args, *write.kwargs.values())
        ):
            record.unreplayable = f"{_name(write.func)} reads another meta tensor"
        elif not record.writes and _name(write.func) not in OVERWRITES:
            record.unreplayable = f"{_name(write.func)} updates a value the replay does not have"
        else:
            if not record.writes:
                self.order.append(owner)
            record.writes.append(write)

    def track(self, module: nn.Module, name: str, param: nn.Parameter) -> None:
        """Swap a just-registered parameter for a meta one, keeping statistics of real values."""
        stats = None
        if not param.is_meta:
            stats = param_stats(name, param)
            meta = nn.Parameter(torch.empty_like(param, device="meta"), requires_grad=param.requires_grad)
            module._parameters[name] = meta
            param = meta
        self.records[id(param)] = _Record(param, stats)
        self.aliases[id(param)] = id(param)

    def track_copy(self, source: nn.Parameter, copy: nn.Parameter) -> None:
        """A deep copy of a tracked parameter (nn.TransformerEncoder clones its initialised layer)
        holds the source's values so far: it replays the writes seen until now, then its own."""
        record = self.records.get(self.aliases.get(id(source), -1))
        if record is None:
            return
        self.records[id(copy)] = _Record(copy, record.stats, list(record.writes), record.unreplayable)
        self.aliases[id(copy)] = id(copy)
        if record.writes:
            self.order.append(id(copy))

    @contextlib.contextmanager
    def active(self) -> Iterator["EmptyInit"]:
        """Patch parameter and buffer registration and parameter deep copies, and enter the mode."""
        register_parameter, register_buffer = nn.Module.register_parameter, nn.Module.register_buffer
        deepcopy_parameter = nn.Parameter.__deepcopy__

        def on_deepcopy(param: nn.Parameter, memo: dict) -> nn.Parameter:
            copy = deepcopy_parameter(param, memo)
            self.track_copy(param, copy)
            return copy

        def on_parameter(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
            register_parameter(module, name, param)
            if param is not None:
                self.track(module, name, module._parameters[name])

        def on_buffer(module: nn.Module, name: str, tensor: torch.Tensor | None, persistent: bool = True) -> None:
            register_buffer(module, name, tensor.to("meta") if isinstance(tensor, torch.Tensor) else tensor, persistent)

        nn.Module.register_parameter, nn.Module.register_buffer = on_parameter, on_buffer
        nn.Parameter.__deepcopy__ = on_deepcopy
        try:
            with self:
                yield self
        finally:
            nn.Module.register_parameter, nn.Module.register_buffer = register_parameter, register_buffer
            nn.Parameter.__deepcopy__ = deepcopy_parameter


def replay_inits(module: nn.Module, recorder: EmptyInit) -> tuple[dict[str, ParamStats], list[str]]:
    """Statistics of every parameter by qualified name, materialising one parameter at a time;
    and notes on parameters whose initialisation could not be reproduced."""
    names = {id(p): n for n, p in module.named_parameters()}
    stats: dict[str, ParamStats] = {}
    notes: list[str] = []
    for key in recorder.order:
        record = recorder.records[key]
        if key not in names:
            continue
        tensor = torch.empty(record.param.shape, dtype=record.param.dtype)
        for write in record.writes:
            write.replay(tensor)
        stats[names[key]] = param_stats(names[key], tensor)
        del tensor
    for key, name in names.items():
        record = recorder.records.get(key)
        if record is None:
            notes.append(f"{name}: its initialisation was not seen on the meta device; statistics unknown")
            continue
        if name not in stats and record.stats is not None:
            stats[name] = dataclasses.replace(record.stats, name=name)
        if record.unreplayable:
            notes.append(f"{name}: {record.unreplayable}; its statistics are those before that write")
        elif name not in stats:
            notes.append(f"{name}: never initialised (torch.empty without a write); statistics unknown")
    return stats, notes


def unknown_stats(name: str, shape: tuple[int, ...]) -> ParamStats:
    """Statistics of a tensor whose values nobody knows: shape only, moments NaN."""
    return ParamStats(name, shape, math.prod(shape), math.nan, math.nan, math.nan, math.nan, 0, math.nan, False)


def stats_lookup(known: dict[str, ParamStats]) -> Callable[..., ParamStats]:
    """A `param_stats` stand-in for the graph builder: recorded statistics for meta tensors."""

    def lookup(name: str, tensor: Any, out_axis: int = 0) -> ParamStats:
        if isinstance(tensor, torch.Tensor) and tensor.is_meta:
            return known.get(name) or unknown_stats(name, tuple(tensor.shape))
        return param_stats(name, tensor, out_axis)

    return lookup


def meta_inputs(module: nn.Module, example: Sequence[torch.Tensor] | None, shapes: list[tuple[int, ...]] | None,
                batch: int) -> tuple:
    """Inputs with shapes only: the factory's examples (resized to `shapes` when given) moved to
    meta, or seeded ones from shapes (ids for an input feeding an embedding, as in the full loader)."""
    if example is not None:
        resized = resized_examples(example, shapes, batch, "the factory") if shapes else example
        return tuple(x.to("meta") for x in resized)
    if not shapes:
        raise InputError("a static-only factory analysis needs --input-shape (e.g. --input-shape 1,128)")
    return synthesize_inputs(module, [tuple(batch if d < 0 else d for d in s) for s in shapes], device="meta")


class MetaUnsupported(InputError):
    """The model does not run on meta tensors (an op without a meta kernel, a value read in forward)."""


def build_on_meta(source: str) -> tuple[nn.Module, Any, EmptyInit]:
    """Run the factory under EmptyInit: the module on meta, its example inputs, the recorder."""
    recorder = EmptyInit()
    factory = resolve_factory(source)
    try:
        with recorder.active():
            module, example, _ = call_factory(factory, source)  # the static estimate takes no loss of its own
    except InputError as error:  # construction itself read a parameter's value
        raise MetaUnsupported(f"{error} when built on the meta device") from error
    return module, example, recorder


def load_torch_meta(source: str, input_shapes: list[tuple[int, ...]] | None = None, *, batch: int = 8,
                    built: tuple[nn.Module, Any, EmptyInit] | None = None) -> ModelHandle:
    """The static-only handle of a factory spec without materialising the model (module doc);
    `built` is what `build_on_meta` returned, when the caller already ran it."""
    module, example, recorder = built or build_on_meta(source)
    with torch.random.fork_rng():  # replayed random inits leave the caller's generator alone
        stats, notes = replay_inits(module, recorder)
    try:
        inputs = meta_inputs(module, example, input_shapes, batch)
        trace = trace_concrete(module, inputs, lambda m: module_rule(m) is not None)
        graph = graph_from_trace(module, trace, stats_of=stats_lookup(stats))
    except InputError:
        raise
    except Exception as error:  # meta kernels are missing for some ops; fx refuses some code
        raise MetaUnsupported(f"{source} does not run on meta tensors ({first_line(error)})") from error
    # no module or runner: the probe cannot run, which `--static-only` did not ask for anyway (so
    # probe_unavailable stays empty and GA502 reports "not requested", as for any static-only run)
    return ModelHandle(source=source, format="torch", graph=graph, inputs=input_specs(graph, inputs),
                       parameters=sum(p.numel() for p in module.parameters()), warnings=notes)


FLOAT32_BYTES = 4  # what the weights would take once materialised


def load_static_only(source: str, input_shapes: list[tuple[int, ...]] | None = None, *, batch: int = 8,
                     max_memory: int | None = None) -> ModelHandle:
    """`--static-only` on a factory: the real weights when they fit in half the memory cap (exact
    statistics, every init seen; decided from the meta build, before any trace), else the meta
    device with replayed inits; the full loader too when the model does not run on meta (its
    handle then says why)."""
    try:
        built = build_on_meta(source)
        weight_bytes = sum(p.numel() for p in built[0].parameters()) * FLOAT32_BYTES
        if weight_bytes <= (max_memory or default_max_memory()) // 2:
            return load_torch(source, input_shapes, batch=batch, max_memory=max_memory)
        return load_torch_meta(source, input_shapes, batch=batch, built=built)
    except MetaUnsupported as unsupported:
        handle = load_torch(source, input_shapes, batch=batch, max_memory=max_memory)
        handle.warnings.append(f"{unsupported}; loaded with its weights instead")
        return handle
