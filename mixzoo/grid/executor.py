"""Executors decide where runs execute; the runner never knows.

An executor takes `RunJob`s and yields `(job, result)` pairs as runs finish, in any
order. `execute_job` (a plain module-level function, so it pickles) does one run and
never raises: a failing run comes back as a result with status "failed". A cluster
executor would submit `execute_job` for each job and yield the results it collects.

The process pool spawns its workers, so a script that calls `run_grid` with it (the
default without a GPU) needs the usual `if __name__ == "__main__":` guard.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import socket
import time
import traceback
from abc import ABC, abstractmethod
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

import yaml

from .io import atomic_write_json, atomic_write_text

__all__ = ["RunJob", "Executor", "SequentialExecutor", "DevicePoolExecutor", "execute_job",
           "make_executor", "auto_devices"]


@dataclass(frozen=True)
class RunJob:
    run_id: str
    run_dir: str
    recipe_data: dict[str, Any]             # the validated recipe, JSON form
    device: str | None = None               # overrides recipe train.device
    progress: bool = False                  # per-run progress bar


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def execute_job(job: RunJob) -> dict[str, Any]:
    """Run one job; write recipe.yaml, metrics.jsonl and status.json in its folder.

    status.json goes "running" -> "done" | "failed" (atomically). Returns the final status.
    """
    run_dir = Path(job.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    data = job.recipe_data
    if job.device is not None:
        data = {**data, "train": {**data["train"], "device": job.device}}
    atomic_write_text(run_dir / "recipe.yaml", yaml.safe_dump(data, sort_keys=False))
    started = time.time()
    status: dict[str, Any] = {"run_id": job.run_id, "status": "running", "started": _now(),
                              "host": socket.gethostname(), "pid": os.getpid(),
                              "device": data["train"].get("device")}
    atomic_write_json(run_dir / "status.json", status)
    try:
        from mixzoo.recipes import load_recipe
        from mixzoo.train import train_recipe
        recipe = load_recipe(data)
        summary = train_recipe(recipe, progress=job.progress, run_dir=run_dir)
        summary.pop("history", None)
        status.update(status="done", result=summary)
    except BaseException as e:  # noqa: BLE001  a failed run is data, not a crash
        if isinstance(e, KeyboardInterrupt):
            raise
        status.update(status="failed", error=f"{type(e).__name__}: {e}",
                      traceback=traceback.format_exc(limit=8))
        if isinstance(e, MemoryError) or "out of memory" in str(e).lower():
            _free_cuda()
    status.update(finished=_now(), wall_s=round(time.time() - started, 3))
    atomic_write_json(run_dir / "status.json", status)
    return status


def _free_cuda() -> None:
    try:
        import torch
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:
        pass


class Executor(ABC):
    """Where runs execute. `run(jobs)` yields (job, status) as each run finishes."""

    #: whether runs report through the caller's terminal (per-run progress bars)
    interactive: bool = False

    def describe(self) -> str:
        return type(self).__name__

    @abstractmethod
    def run(self, jobs: Iterable[RunJob]) -> Iterator[tuple[RunJob, dict[str, Any]]]:
        ...


class SequentialExecutor(Executor):
    """One run after another in this process (the default)."""
    interactive = True

    def __init__(self, device: str | None = None):
        self.device = device

    def describe(self) -> str:
        return f"sequential on {self.device or 'the recipe device'}"

    def run(self, jobs):
        for job in jobs:
            if self.device is not None:
                job = RunJob(job.run_id, job.run_dir, job.recipe_data, self.device, job.progress)
            yield job, execute_job(job)


_WORKER_DEVICE: dict[str, str] = {}


def _init_worker(queue, cpu_threads: int) -> None:
    dev = queue.get()
    _WORKER_DEVICE["device"] = dev
    if dev == "cpu":
        # Several CPU workers share the cores: oversubscribed OpenMP threads spin and can
        # run 10-30x slower, so each worker gets its share of the cores and no more.
        import torch
        torch.set_num_threads(cpu_threads)


def _execute_on_worker_device(job: RunJob) -> dict[str, Any]:
    dev = _WORKER_DEVICE["device"]
    return execute_job(RunJob(job.run_id, job.run_dir, job.recipe_data, dev, False))


class DevicePoolExecutor(Executor):
    """One worker process per device (e.g. cuda:0, cuda:1), one run at a time on each.
    A device may repeat: `cpu,cpu` runs two CPU runs at a time, each on half the cores.

    Workers are spawned (CUDA cannot be forked); each pins itself to its device at start.
    """

    def __init__(self, devices: list[str]):
        if not devices:
            raise ValueError("DevicePoolExecutor needs at least one device")
        self.devices = list(devices)
        n_cpu = sum(d == "cpu" for d in self.devices)
        self.cpu_threads = max(1, (os.cpu_count() or 1) // max(n_cpu, 1))

    def describe(self) -> str:
        cpu = sum(d == "cpu" for d in self.devices)
        other = [d for d in self.devices if d != "cpu"]
        parts = ([f"{cpu} CPU workers ({self.cpu_threads} thread"
                  f"{'s' if self.cpu_threads > 1 else ''} each)"] if cpu else []) + other
        return ", ".join(parts)

    def run(self, jobs):
        jobs = list(jobs)
        if not jobs:
            return
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        for d in self.devices:
            queue.put(d)
        with ProcessPoolExecutor(max_workers=len(self.devices), mp_context=ctx,
                                 initializer=_init_worker,
                                 initargs=(queue, self.cpu_threads)) as pool:
            pending = {pool.submit(_execute_on_worker_device, j): j for j in jobs}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    job = pending.pop(fut)
                    try:
                        status = fut.result()
                    except Exception as e:  # the worker died (killed, segfault, ...)
                        status = {"run_id": job.run_id, "status": "failed",
                                  "error": f"worker process failed: {type(e).__name__}: {e}"}
                        atomic_write_json(Path(job.run_dir) / "status.json", status)
                    yield job, status


def auto_devices(n_runs: int) -> list[str]:
    """Every visible GPU; without one, one single-threaded CPU worker per core (a grid of
    small models runs fastest, and safest on a shared machine, as parallel 1-thread runs)."""
    import torch
    if torch.cuda.is_available():
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return ["cpu"] * max(1, min(os.cpu_count() or 1, n_runs))


def make_executor(devices: list[str] | None) -> Executor:
    """Sequential in this process for no device or one; a process pool for several."""
    if not devices:
        return SequentialExecutor()
    if len(devices) == 1:
        return SequentialExecutor(devices[0])
    return DevicePoolExecutor(devices)
