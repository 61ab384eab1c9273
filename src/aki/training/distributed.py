"""One command from 1 CPU process to many GPUs: process group from torchrun's environment,
FSDP2 (``fully_shard``) with each decoder layer and the resampler as their own units.

Without ``WORLD_SIZE`` (plain ``aki train``), no process group is created and the model is left
unwrapped. gloo on CPU, nccl on CUDA.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

CPU = torch.device("cpu")


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = CPU

    @property
    def distributed(self) -> bool:
        return dist.is_available() and dist.is_initialized()

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup() -> DistInfo:
    """Read torchrun's environment; initialise the process group when launched by it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    if "WORLD_SIZE" in os.environ and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", device_id=
                                device if device.type == "cuda" else None)
    return DistInfo(rank, world, local, device)


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The LLM's decoder layers (``language_model.model.layers`` in transformers causal LMs)."""
    lm = getattr(model, "language_model", model)
    decoder = lm.get_decoder() if hasattr(lm, "get_decoder") else getattr(lm, "model", lm)
    layers = getattr(decoder, "layers", None)
    if layers is None:
        raise ValueError("cannot find the decoder layers to shard (expected language_model.model.layers)")
    return list(layers)


def shard_model(model: nn.Module, mp_dtype: torch.dtype | None = None,
                reduce_dtype: torch.dtype | None = None) -> nn.Module:
    """FSDP2: each decoder layer and the resampler their own unit, then the root (vision tower,
    embeddings, head). ``mp_dtype``: the dtype parameters are all-gathered and computed in (bf16
    over fp32 master weights); ``reduce_dtype``: the dtype gradients are reduced in (fp32)."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    kwargs = {}
    if mp_dtype is not None or reduce_dtype is not None:
        kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=mp_dtype, reduce_dtype=reduce_dtype)
    for layer in decoder_layers(model):
        fully_shard(layer, **kwargs)
    if hasattr(model, "resampler"):
        fully_shard(model.resampler, **kwargs)
    fully_shard(model, **kwargs)
    return model


def all_reduce_sum(value: float | int | torch.Tensor, info: DistInfo) -> float:
    """Sum a number over ranks (the value itself without a process group)."""
    if not info.distributed:
        return float(value)
    t = torch.as_tensor(value, dtype=torch.float64, device=info.device if info.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return float(t)


def all_gather_objects(obj, info: DistInfo) -> list:
    if not info.distributed:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's ``obj`` on every rank (pickled)."""
    if not info.distributed:
        return obj
    box = [obj if info.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@contextlib.contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Create every parameter on the meta device (no memory, no init) while buffers stay real.

    Buffers (rotary frequencies, position ids) are computed at construction and are not in a
    checkpoint, so they must be real; ``torch.device("meta")`` would make them meta too.
    accelerate's ``init_empty_weights(include_buffers=False)`` does the same; it is not a
    dependency of aki, so the few lines live here.
    """
    register = nn.Module.register_parameter

    def on_meta(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        register(module, name, param)
        if param is not None and param.device.type != "meta":
            kind = type(module._parameters[name])
            module._parameters[name] = kind(module._parameters[name].to("meta"), requires_grad=param.requires_grad)

    nn.Module.register_parameter = on_meta  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter = register  # type: ignore[method-assign]


def sharded_from_full(config: Any, full_state: dict[str, torch.Tensor] | None, info: DistInfo,
                      dtype: torch.dtype, mp_dtype: torch.dtype | None = None,
                      attn_implementation: str | None = None) -> nn.Module:
    """Every rank builds the model on the meta device, shards it (FSDP2), allocates only its own
    shards, and receives the weights from rank 0's ``full_state`` by broadcast (other ranks pass
    None): one full copy of the weights exists, on rank 0, and no rank builds the model twice."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    from aki.model import AkiForConditionalGeneration

    kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    with parameters_on_meta():
        model = AkiForConditionalGeneration._from_config(config, dtype=dtype, **kwargs)
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    # gradients are reduced in fp32 whenever parameters or compute are narrower
    reduce = torch.float32 if (mp_dtype is not None or dtype != torch.float32) else None
    shard_model(model, mp_dtype, reduce)
    model.to_empty(device=info.device)
    with torch.no_grad():
        for name, b in model.named_buffers():
            b.copy_(buffers[name])
    set_model_state_dict(model, full_state if info.is_main else {},
                         options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
    for name, p in model.named_parameters():
        p.requires_grad_(name not in frozen)
    return model
