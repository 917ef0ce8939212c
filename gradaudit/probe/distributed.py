"""The probe under an existing distributed engine: torchrun + PyTorch FSDP, for models that do not
fit one device.

Each rank builds the model from the same factory, FSDP (`fully_shard`, FSDP2) shards its parameters across the ranks,
and every rank runs the probe's passes on the *same* seeded batch (the one `run_probe` draws),
under the same loss. FSDP averages the identical per-rank gradients, so each sharded gradient
equals the single-process one; a weight's squared gradient norm is summed over the shards
(all_reduce) and divided by its size, giving the same per-layer gradient RMS as `run_probe`
(root-mean-square over passes, as gradaudit.probe.tally combines them).

Command (CPU, gloo; use the nccl backend on GPUs):
    torchrun --nproc_per_node 2 -m gradaudit.probe.distributed pkg.models:build --input-shape 8,32
prints, on rank 0, one JSON object: {"passes", "world_size", "layers": {parameter: grad_rms}}.
The factory builds the full model on each rank before sharding; a model too big for that must
be built by its own FSDP-aware code (meta device + `param_init_fn`), which this module does not do.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Sequence

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

from gradaudit.graph import weight_layers
from gradaudit.loaders.torch_loader import load_torch
from gradaudit.model import ModelHandle
from gradaudit.probe.batches import BatchSource
from gradaudit.probe.objective import objective_for
from gradaudit.probe.run import training_copy


def _sharded_square_norms(model: torch.nn.Module, wanted: set[str]) -> dict[str, float]:
    """Squared gradient norm of each wanted parameter, summed over every rank's shard."""
    names = sorted(wanted)
    local = torch.zeros(len(names), dtype=torch.float64)
    index = {name: i for i, name in enumerate(names)}
    for name, param in model.named_parameters():
        grad = param.grad.to_local() if param.grad is not None else None  # this rank's shard (a DTensor)
        if name in index and grad is not None and grad.numel():
            local[index[name]] = torch.linalg.vector_norm(grad.detach(), dtype=torch.float64) ** 2
    dist.all_reduce(local, op=dist.ReduceOp.SUM)
    return dict(zip(names, local.tolist()))


def fsdp_grad_rms(handle: ModelHandle, *, passes: int = 3, seed: int = 0) -> dict[str, float]:
    """Per weight layer (parameter name -> gradient RMS) over `passes` FSDP passes; call on every
    rank of an initialised process group. Same batches, loss and combination as `run_probe`."""
    layers = weight_layers(handle.graph)
    sizes = dict((name, p.numel()) for name, p in handle.module.named_parameters())
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = fully_shard(training_copy(handle.module), mesh=init_device_mesh(device, (dist.get_world_size(),)))
    batches = BatchSource(handle, None, next(model.parameters()).device)
    objective = objective_for(handle.graph, handle.loss_fn)
    wanted = {layer.param for layer in layers}
    mean_squares: dict[str, list[float]] = {name: [] for name in wanted}
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for index in range(passes):
            inputs = batches.draw(seed + index)
            model.zero_grad(set_to_none=True)
            objective.compute(model(*inputs), inputs, seed + index).backward()
            for name, square in _sharded_square_norms(model, wanted).items():
                mean_squares[name].append(square / max(sizes[name], 1))
    return {layer.param: math.sqrt(sum(mean_squares[layer.param]) / passes) for layer in layers}


def main(argv: Sequence[str] | None = None) -> None:
    """torchrun entry point (see the module doc)."""
    parser = argparse.ArgumentParser(description="gradaudit probe under torchrun + FSDP")
    parser.add_argument("source", help="factory spec, module:function or file.py:function")
    parser.add_argument("--input-shape", action="append", default=None,
                        type=lambda text: tuple(int(d) for d in text.split(",")))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", default="gloo")
    args = parser.parse_args(argv)
    dist.init_process_group(args.backend)
    try:
        handle = load_torch(args.source, args.input_shape, batch=args.batch)
        layers = fsdp_grad_rms(handle, passes=args.passes, seed=args.seed)
        if dist.get_rank() == 0:
            print(json.dumps({"passes": args.passes, "world_size": dist.get_world_size(), "layers": layers}))
        dist.barrier()  # no rank tears gloo down while another still has a collective in flight
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
