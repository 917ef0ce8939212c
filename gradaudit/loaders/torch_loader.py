"""The PyTorch loader: a factory spec, a saved module or a live module -> ModelHandle.

The LayerGraph comes from a concrete torch.fx trace (torch_trace) mapped onto the shared
vocabulary (torch_ops, torch_functions, torch_graph); when fx cannot trace, from forward hooks
over the leaf modules (torch_hooks), marked partial. TorchScript modules cannot be traced by fx
and do not fire Python hooks from scripted code, so their graph is the chain of their leaf
submodules in definition order, also marked partial; they still run and can be probed.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from gradaudit.errors import InputError
from gradaudit.limits import default_max_memory, require_fits, tensor_bytes
from gradaudit.loaders import is_factory_spec
from gradaudit.loaders.torch_graph import graph_from_trace
from gradaudit.loaders.torch_hooks import graph_from_hooks
from gradaudit.loaders.torch_ops import module_rule
from gradaudit.loaders.torch_runner import FxRunner
from gradaudit.loaders.torch_script import graph_from_script, run_script
from gradaudit.loaders.torch_sources import call_factory, first_line, load_file, resolve_factory
from gradaudit.loaders.torch_trace import (
    deterministic_training_forward,
    trace_concrete,
    trace_exported,
    training_forward,
)
from gradaudit.model import InputSpec, ModelHandle

INPUT_SEED = 0
FOLLOWED_CONVERSIONS = frozenset({"long", "int", "to", "type", "short", "clone", "contiguous", "view", "reshape"})


def load_torch(
    source: str,
    input_shapes: list[tuple[int, ...]] | None = None,
    *,
    trust: bool = False,
    batch: int = 8,
    max_memory: int | None = None,
) -> ModelHandle:
    """Load a torch model from a factory spec or a file; see torch_sources for the forms.

    Without example inputs from the factory, `input_shapes` (one per forward input, batch first;
    a leading -1 stands for `batch`) makes float inputs, or int64 ones for an input whose first
    consumer is an embedding; with them, it resizes the examples (`resized_examples`). Made-up
    inputs' size is checked against `max_memory` before they exist. A loss the factory returns
    becomes the handle's `loss_fn`.
    """
    if is_factory_spec(source):
        module, example, loss_fn = call_factory(resolve_factory(source), source)
    else:
        module, example, loss_fn = load_file(source, trust, max_memory), None, None
    if example is None and not input_shapes:
        raise InputError(f"{source} gives no example inputs: pass --input-shape (e.g. --input-shape 8,3,32,32)")
    if input_shapes:
        shapes = [tuple(batch if d < 0 else d for d in s) for s in input_shapes]
        cap = default_max_memory() if max_memory is None else max_memory
        require_fits(f"{source}: the inputs of shape {', '.join(map(str, shapes))}",
                     sum(tensor_bytes(s, torch.int64.itemsize) for s in shapes), cap)  # ids are the widest inputs
        example = (
            synthesize_inputs(module, shapes) if example is None else resized_examples(example, shapes, batch, source)
        )
    return dataclasses.replace(from_module(module, example, source), loss_fn=loss_fn)


def from_module(module: torch.nn.Module, example_inputs: tuple, source: str = "<module>") -> ModelHandle:
    """The handle of a live module and its example inputs (the Python API's entry point)."""
    if not isinstance(module, torch.nn.Module):
        raise InputError(f"expected a torch.nn.Module, got {type(module).__name__}")
    inputs = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
    check_forward(module, inputs)
    if isinstance(module, torch.jit.ScriptModule):
        graph, runner, notes = graph_from_script(module, inputs), run_script, []
    else:
        graph, runner, notes = _trace_or_hooks(module, inputs)
    return ModelHandle(
        source=source,
        format="torch",
        graph=graph,
        inputs=input_specs(graph, inputs),
        module=module,
        runner=runner,
        example_inputs=inputs,
        parameters=sum(p.numel() for p in module.parameters()),
        warnings=([graph.graph["partial_reason"]] if graph.graph["partial"] else []) + notes,
    )


TRACERS = (
    (
        "torch.fx",
        training_forward,
        lambda module, inputs: trace_concrete(module, inputs, lambda m: module_rule(m) is not None),
    ),
    ("torch.export", training_forward, trace_exported),
    (
        "torch.export without random choices",
        deterministic_training_forward,
        lambda module, inputs: trace_exported(module, inputs, deterministic_training_forward),
    ),
)
DETERMINISTIC_NOTE = ("traced without the training forward's random choices (eval mode but for BatchNorm, which "
                      "reads the batch): dropout, LayerDrop and in-model masking are not in the graph")


def _trace_or_hooks(module: torch.nn.Module, inputs: tuple) -> tuple[Any, Any, list[str]]:
    """The first trace (TRACERS: fx keeps known modules whole, torch.export reads any Python the
    model runs, then the same without the random choices no single trace holds) that reproduces
    the model's outputs in the same modes; the hook graph only when none does. Also the notes
    the report owes (why the first tracers failed, when the last one was needed)."""
    failures = []
    for tracer_name, forward, tracer in TRACERS:
        try:
            trace = tracer(module, inputs)
            runner = FxRunner(trace)
            mismatch = _mismatch(forward(module), runner, inputs)
        except Exception as error:  # tracers refuse many Python constructs; the next one may not
            failures.append(f"{tracer_name} could not trace the model ({first_line(error)})")
            continue
        if not mismatch:
            notes = (
                [f"{DETERMINISTIC_NOTE}; {'; '.join(failures)}"] if forward is deterministic_training_forward else []
            )
            return graph_from_trace(module, trace), runner, notes
        failures.append(f"the {tracer_name} trace does not reproduce the model ({mismatch})")
    reason = "; ".join(failures) + "; the graph holds only its leaf modules, recorded with forward hooks"
    return *graph_from_hooks(module, inputs, reason), []


def _mismatch(work: torch.nn.Module, runner: FxRunner, inputs: tuple) -> str:
    """Why the traced graph's outputs differ from those of `work` (the module in the modes it was
    traced in) on the same seeded run ("" if not).

    Tracing bakes in Python decisions (isinstance checks, branches on shapes); this catches one
    that went a different way than the real forward pass.
    """
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(INPUT_SEED)
        expected = torch.utils._pytree.tree_leaves(work(*inputs))
        torch.manual_seed(INPUT_SEED)
        actual = torch.utils._pytree.tree_leaves(runner(work, inputs, ())[0])
    if len(expected) != len(actual):
        return f"{len(actual)} outputs instead of {len(expected)}"
    for index, (want, got) in enumerate(zip(expected, actual)):
        if isinstance(want, torch.Tensor) and not (
            isinstance(got, torch.Tensor)
            and want.shape == got.shape
            and torch.allclose(want, got, rtol=1e-4, atol=1e-5, equal_nan=True)
        ):
            return f"output {index} differs"
    return ""


def check_forward(module: torch.nn.Module, inputs: tuple) -> None:
    """Run the model once on a copy so a wrong input shape fails here, with one clear line."""
    try:
        with torch.no_grad(), torch.random.fork_rng():
            training_forward(module)(*inputs)
    except Exception as error:
        shapes = ", ".join(str(tuple(x.shape)) for x in inputs)
        raise InputError(f"the forward pass on inputs of shape {shapes} raised {first_line(error)}") from error


class _EmbeddingInput(Exception):
    def __init__(self, index: int, num_embeddings: int):
        super().__init__(f"input {index} feeds an embedding of {num_embeddings} rows")
        self.index, self.num_embeddings = index, num_embeddings


class _FirstConsumer(TorchFunctionMode):
    """Watches what each float input flows into first; stops the run at an embedding lookup.

    Casts and views of an input are followed (`x.long()` then `embedding`); any other first
    consumer settles that input as a float input.
    """

    def __init__(self, inputs: tuple):
        super().__init__()
        self.aliases = {id(x): i for i, x in enumerate(inputs)}
        self.settled: set[int] = set()
        self.keep = list(inputs)

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        fed = [self.aliases[id(a)] for a in list(args) + list(kwargs.values())
               if isinstance(a, torch.Tensor) and id(a) in self.aliases and self.aliases[id(a)] not in self.settled]
        if fed and func in (F.embedding, torch.embedding):
            raise _EmbeddingInput(fed[0], int((args[1] if len(args) > 1 else kwargs["weight"]).shape[0]))
        out = func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        for index in fed:
            if name in FOLLOWED_CONVERSIONS and isinstance(out, torch.Tensor):
                self.aliases[id(out)] = index
                self.keep.append(out)
            else:
                self.settled.add(index)
        return out


def resized_examples(example: Any, input_shapes: Sequence[tuple[int, ...]], batch: int, source: str) -> tuple:
    """The factory's example inputs at the shapes --input-shape asks for (a leading -1 is
    `batch`): same dtypes, seeded N(0, 1) floats, integers drawn from the example's own range."""
    inputs = (example,) if isinstance(example, torch.Tensor) else tuple(example)
    if len(inputs) != len(input_shapes) or not all(isinstance(x, torch.Tensor) for x in inputs):
        raise InputError(f"{source} returns {len(inputs)} example input(s); --input-shape gives {len(input_shapes)} "
                         "shape(s), one per tensor input, or leave it out to use the examples as they are")
    generator = torch.Generator().manual_seed(INPUT_SEED)
    resized = []
    for x, shape in zip(inputs, input_shapes):
        shape = tuple(batch if d < 0 else d for d in shape)
        if x.is_floating_point():
            resized.append(torch.randn(shape, generator=generator).to(x.dtype))
        else:
            low, high = (int(x.min()), int(x.max()) + 1) if x.numel() else (0, 2)
            resized.append(torch.randint(low, high, shape, generator=generator).to(x.dtype))
    return tuple(resized)


def synthesize_inputs(module: torch.nn.Module, shapes: Sequence[tuple[int, ...]], device: str = "cpu") -> tuple:
    """Seeded N(0, 1) inputs; an input whose first consumer is an embedding becomes int64 ids.
    On the meta device (a model without weights, torch_meta) they carry shapes and dtypes only."""
    generator = torch.Generator().manual_seed(INPUT_SEED)
    inputs = [torch.randn(shape, generator=generator).to(device) for shape in shapes]
    work = training_forward(module)
    for _ in range(len(inputs)):
        try:
            with torch.no_grad(), torch.random.fork_rng(), _FirstConsumer(tuple(inputs)):
                work(*inputs)
        except _EmbeddingInput as found:
            ids = torch.randint(0, found.num_embeddings, shapes[found.index], generator=generator)
            inputs[found.index] = ids.to(device)
            continue
        except Exception:
            break  # the forward check reports the error with the final inputs
        break
    return tuple(inputs)


def input_specs(graph: Any, inputs: tuple) -> list[InputSpec]:
    specs = []
    for node_id, x in zip(graph.graph["inputs"], inputs):
        dtype = str(x.dtype).removeprefix("torch.")
        high = None
        if not x.is_floating_point():
            tables = [graph.nodes[s]["attrs"].get("num_embeddings") for s in graph.successors(node_id)]
            high = next((t for t in tables if t), int(x.max()) + 1 if x.numel() and not x.is_meta else 1)
        specs.append(InputSpec(graph.nodes[node_id]["name"], tuple(x.shape), dtype, high))
    return specs
