"""This process's place in a torchrun job: Dist (rank, world size, this rank's shard, sums over
ranks), joining the job, agreeing on rank 0's values, and claiming the run folder once for all
ranks. Alone (no WORLD_SIZE, or 1) every helper is a no-op with rank 0 of 1."""

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from . import runs


@dataclass
class Dist:
    """This process's place in a torchrun job (rank 0 of 1 when run alone)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> slice:
        """This rank's contiguous slice of n items: every item to exactly one rank, sizes within 1."""
        return slice(n * self.rank // self.world, n * (self.rank + 1) // self.world)

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            dist.all_reduce(tensor)
        return tensor


def init(device_kind: str) -> Dist:
    """Joins the torchrun job if there is one (gloo on the CPU, NCCL on CUDA). Collectives time out
    after $LENET_EXT_DIST_TIMEOUT seconds (default 120), so a lost peer ends the run with an error."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    timeout = datetime.timedelta(seconds=float(os.environ.get("LENET_EXT_DIST_TIMEOUT", "120")))
    # The job's store (torchrun's agent keeps it across restarts of the workers): each attempt gets
    # its own keys, so restarted workers never read the addresses their killed predecessors left.
    store, rank, size = next(dist.rendezvous("env://", timeout=timeout))
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    dist.init_process_group(
        "nccl" if device_kind == "cuda" else "gloo",
        store=dist.PrefixStore(f"lenet_ext/attempt_{attempt}", store),
        rank=rank,
        world_size=size,
        timeout=timeout,
    )
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def agree(ranks: Dist, value):
    """Rank 0's value, on every rank (a run folder name, an error message)."""
    if ranks.world == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def claim(ranks: Dist, run_dir: str, new: bool, flag: str):
    """Rank 0 claims the run folder; every rank fails with its message if it could not."""
    folder, problem = None, None
    if ranks.main:
        try:
            folder = runs.claim(run_dir, new=new, flag=flag)
        except runs.RunFolderError as exc:
            problem = str(exc)
    problem = agree(ranks, problem)
    if problem:
        raise runs.RunFolderError(problem)
    return folder
