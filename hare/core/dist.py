"""Process-group helpers for ``torchrun``: rank, world size, device, barriers and reductions.

``torchrun --nproc_per_node N -m hare train RECIPE`` sets RANK, WORLD_SIZE and LOCAL_RANK; without
them everything here is a no-op for a single process. The backend is NCCL on GPUs and gloo on CPU,
so the same code (and its tests) runs on a laptop.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def distributed() -> bool:
    return world_size() > 1


def init(device: str = "auto") -> torch.device:
    """Join the process group when launched by torchrun; returns this process's device."""
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
    if dist.is_initialized():
        dist.barrier()


def mean(value: float, device: torch.device) -> float:
    """The mean of a number over all processes."""
    if not dist.is_initialized():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.item() / dist.get_world_size()


def broadcast_object(obj):
    """``obj`` as rank 0 has it, on every rank."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
