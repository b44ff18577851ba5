"""Scale applied from outside the model: processes, activation checkpointing, compile, DDP / FSDP2.

The model (`kiban.model.llama.Llama`) is single-device code; `parallelize` changes how its blocks
run without renaming a parameter, so checkpoints look the same whatever ran them. The order is
torchtitan's (torchtitan/models/llama3/infra/parallelize.py): activation checkpointing, then
`torch.compile` per block, then data parallelism (FSDP2 per block then the root, or DDP).

    world = init_world("auto")            # reads torchrun's RANK / WORLD_SIZE / LOCAL_RANK
    model = parallelize(model, cfg, world, mode="fsdp")
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import nn

from kiban.errors import ConfigError

Mode = Literal["none", "ddp", "fsdp"]


@dataclass(frozen=True)
class World:
    """This process's place in the run: rank of size, and the device it computes on."""

    rank: int
    local_rank: int
    size: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_world(device: str = "auto") -> World:
    """Join the torchrun process group (gloo on CPU, nccl on GPU), or a world of one without torchrun."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                "device: cuda, but torch sees no CUDA device (torch.cuda.is_available() is False)"
            )
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA devices")
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if size > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(
            backend,
            timeout=datetime.timedelta(
                minutes=30
            ),  # checkpoint writes on rank 0 hold the others at a barrier
            device_id=dev if dev.type == "cuda" else None,
        )
    return World(rank, local_rank, size, dev)


def close_world(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: World) -> None:
    if world.size > 1:
        dist.barrier()


def all_reduce_sum(t: torch.Tensor, world: World) -> torch.Tensor:
    """Sum over processes (gloo has no AVG)."""
    if world.size > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def resolve_mode(parallel: str, world: World) -> Mode:
    """`auto` → fsdp under torchrun with more than one process, else none; one process is always none."""
    if world.size == 1:
        return "none"
    if parallel == "none":
        raise ConfigError(
            f"parallel: none, but torchrun started {world.size} processes; each would train its own model "
            "(use parallel: ddp or fsdp, or run without torchrun)"
        )
    return "fsdp" if parallel == "auto" else parallel  # type: ignore[return-value]


def parallelize(
    model: nn.Module,
    world: World,
    *,
    mode: Mode,
    activation_checkpointing: bool = False,
    compile: bool = False,
) -> nn.Module:
    """Wrap `model` (a `Llama` with blocks in `model.layers`) for training; returns what to call.

    FSDP2 shards in place and returns `model` itself; DDP returns a wrapper whose `.module` is
    `model`. Parameter names never change, so `model.state_dict()` keys stay Hugging Face's.
    """
    blocks = list(model.layers)
    if activation_checkpointing:
        for block in blocks:
            _checkpoint_block(block)
    if compile:
        for block in blocks:
            block.compile()  # in place: keeps parameter names (a wrapping OptimizedModule would not)
    if mode == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for block in blocks:
            fully_shard(block)
        fully_shard(model)  # the embedding (tied to the head), the final norm
        return model
    if mode == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        ids = [world.device.index] if world.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)
    return model


def _checkpoint_block(block: nn.Module) -> None:
    """Recompute `block`'s activations in backward; its parameters keep their names.

    The instance attribute shadows the class's `forward`, so `block(...)` (and any hook a later
    wrapper registers on `block`) still runs through `nn.Module.__call__`.
    """
    from torch.utils.checkpoint import checkpoint

    inner = block.forward

    def forward(*args: Any) -> Any:
        return checkpoint(inner, *args, use_reentrant=False)

    block.forward = forward  # type: ignore[method-assign]


@contextlib.contextmanager
def grad_sync(model: nn.Module, mode: Mode, sync: bool) -> Iterator[None]:
    """Skip the gradient all-reduce / reduce-scatter on all but the last micro-batch of a step."""
    if mode == "ddp" and not sync:
        with model.no_sync():  # type: ignore[operator]
            yield
        return
    if mode == "fsdp":
        model.set_requires_gradient_sync(sync)  # type: ignore[operator]
    yield
