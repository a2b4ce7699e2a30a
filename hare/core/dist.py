"""Process-group helpers for ``torchrun``: rank, world size, device, barriers and reductions.

``torchrun --nproc_per_node N -m hare train RECIPE`` sets RANK, WORLD_SIZE and LOCAL_RANK; without
them everything here is a no-op for a single process. The backend is NCCL on GPUs and gloo on CPU,
so the same code (and its tests) runs on a laptop.

PyTorch is imported only when it is needed: a process that has not imported it cannot be in a
process group, so the pipeline's rank checks and barriers cost nothing in steps that never load it
(reading a corpus starts without PyTorch).
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def distributed() -> bool:
    return world_size() > 1


def _group():
    """``torch.distributed`` when this process is in a process group, else None."""
    if "torch" not in sys.modules:
        return None
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def init(device: str = "auto") -> torch.device:
    """Join the process group when launched by torchrun; returns this process's device."""
    import torch
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"train.device={device} but PyTorch sees no CUDA device")
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if distributed() and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if not use_cuda:
        return torch.device("cpu")
    # Under torchrun each process takes the GPU of its local rank; alone, the one named (or the first).
    dev = torch.device(f"cuda:{local}" if distributed() or device in ("auto", "cuda") else device)
    torch.cuda.set_device(dev)
    return dev


def barrier() -> None:
    dist = _group()
    if dist is not None:
        dist.barrier()


def mean(value: float, device: torch.device) -> float:
    """The mean of a number over all processes."""
    dist = _group()
    if dist is None:
        return value
    import torch

    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.item() / dist.get_world_size()


def broadcast_object(obj):
    """``obj`` as rank 0 has it, on every rank."""
    dist = _group()
    if dist is None:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
