"""Multi-process helpers over torch.distributed (torchrun); every helper is a no-op in one process.

The only module of mrisynth that imports `torch.distributed`. Processes are started by torchrun
(`RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR` in the environment); `launch` starts torchrun
for `mrisynth train --gpus N`. Backend: NCCL on CUDA, gloo on CPU.
"""

from __future__ import annotations

import datetime
import logging
import os
import subprocess
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


def is_launched() -> bool:
    """True when this process was started by torchrun (or another launcher) with WORLD_SIZE."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device_type: str) -> torch.device | None:
    """Join the process group when launched by torchrun; returns this rank's CUDA device, if any.

    Must be called before any other helper. Does nothing in a single process.
    """
    cuda_device = None
    if device_type == "cuda" and torch.cuda.is_available():
        cuda_device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(cuda_device)
    if is_launched() and not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        dist.init_process_group(
            backend=backend,
            timeout=datetime.timedelta(minutes=30),
            device_id=cuda_device,
        )
        log.info("rank %d/%d joined (%s)", get_rank(), get_world_size(), backend)
    return cuda_device


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def exit_worker() -> None:
    """End a torchrun worker whose run is complete, skipping the interpreter's teardown.

    Measured with two gloo ranks on CPU under load (about 1 run in 10): after
    destroy_process_group and the atexit handlers, one rank's teardown waited until the other
    rank exited and then aborted ('terminate called without an active exception', SIGABRT),
    so torchrun failed a run whose snapshots were all written. Everything is closed by the
    time this runs (stats, log file, archive); only the streams need flushing.
    """
    if not is_launched():
        return
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def get_rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    """Rank 0: the process that writes logs, stats, grids and snapshots."""
    return get_rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def _all_reduce(t: torch.Tensor) -> None:
    """Sum in place; NCCL only reduces CUDA tensors, so CPU ones take a round trip."""
    if dist.get_backend() == "nccl" and t.device.type != "cuda":
        tmp = t.to(torch.device("cuda", torch.cuda.current_device()))
        dist.all_reduce(tmp, op=dist.ReduceOp.SUM)
        t.copy_(tmp)
    else:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """In-place sum over ranks (returns `t`)."""
    if dist.is_initialized() and get_world_size() > 1:
        _all_reduce(t)
    return t


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    """In-place mean over ranks (returns `t`)."""
    if dist.is_initialized() and get_world_size() > 1:
        _all_reduce(t)
        t /= get_world_size()
    return t


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank `src`'s `obj` on every rank (JSON-sized things: paths, option dicts)."""
    if not (dist.is_initialized() and get_world_size() > 1):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order (e.g. RNG states for an exact resume)."""
    if not (dist.is_initialized() and get_world_size() > 1):
        return [obj]
    out: list[Any] = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_module(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank `src`'s parameters and buffers to every rank (identical start)."""
    if not (dist.is_initialized() and get_world_size() > 1):
        return
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src=src)


def all_reduce_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """Average the gradients of `params` over ranks with one flat all-reduce.

    This is DistributedDataParallel's reduction done explicitly once per phase, which stays
    correct with lazy regularisation, double backward (R1, path length) and accumulation.
    Missing gradients count as zero so every rank reduces the same flat buffer.
    """
    params = [p for p in params if p.requires_grad]
    if not params or not (dist.is_initialized() and get_world_size() > 1):
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.flatten() for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= get_world_size()
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n


def check_in_sync(module: torch.nn.Module, name: str) -> None:
    """Raise if the ranks' copies of `module` differ (they must stay bitwise identical)."""
    if not (dist.is_initialized() and get_world_size() > 1):
        return
    total = torch.stack([p.detach().double().sum() for p in module.parameters()]).sum()
    gathered = [torch.zeros_like(total) for _ in range(get_world_size())]
    dist.all_gather(gathered, total)
    if any(not torch.equal(g, gathered[0]) for g in gathered):
        values = ", ".join(f"{float(g):.9g}" for g in gathered)
        raise RuntimeError(f"{name} weights differ between ranks ({values}); please report")


def launch(num_procs: int, argv: Sequence[str]) -> int:
    """Run `python -m mrisynth <argv>` under torchrun with `num_procs` processes on this host.

    Returns torchrun's exit status. Used by `mrisynth train --gpus N`.
    """
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={num_procs}", "-m", "mrisynth", *argv,
    ]  # fmt: skip
    log.info("launching: %s", " ".join(cmd))
    return subprocess.call(cmd)
