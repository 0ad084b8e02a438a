"""Process-group plumbing for running the trainer under ``torchrun``.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; without them the trainer runs as a single
process and none of this does anything. gloo is used on CPU, nccl on CUDA.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    initialised_here: bool = False

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device_kind: str) -> Dist:
    """Join the process group torchrun describes (if any)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_initialized():
        return Dist(rank, world, local_rank, False)
    backend = "nccl" if device_kind == "cuda" else "gloo"
    if backend == "nccl":
        import torch

        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend)
    return Dist(rank, world, local_rank, True)


def teardown(d: Dist) -> None:
    if d.initialised_here:
        import torch.distributed as dist

        dist.destroy_process_group()


def barrier(d: Dist) -> None:
    if d.enabled:
        import torch.distributed as dist

        dist.barrier()


def broadcast_floats(d: Dist, values: list[float], device) -> list[float]:
    """Rank 0's values on every rank (plain tensors, no pickled objects)."""
    if not d.enabled:
        return values
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return t.cpu().tolist()


def mean_floats(d: Dist, values: list[float], device) -> list[float]:
    """Mean over ranks, for logging losses that every rank computed on its shard."""
    if not d.enabled:
        return values
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return (t / d.world).cpu().tolist()
