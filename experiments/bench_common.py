"""Timing helpers shared by the benchmarks (median of repeats, side by side)."""

import statistics
import time
from typing import Callable, NamedTuple

import jax


class Row(NamedTuple):
  name: str
  ours_s: float      # median seconds, this library
  baseline_s: float  # median seconds, PyTorch/Captum on the identical network
  baseline: str

  @property
  def speedup(self) -> float:
    return self.baseline_s / self.ours_s


def torch_device() -> str:
  """Where the PyTorch baseline runs: CUDA when JAX runs on a GPU too."""
  import torch
  on_gpu = jax.devices()[0].platform == "gpu"
  return "cuda" if on_gpu and torch.cuda.is_available() else "cpu"


def _sync(out):
  """Waits for JAX and (on CUDA) PyTorch work to finish."""
  jax.block_until_ready(out)
  import torch
  if torch.cuda.is_available() and torch.cuda.is_initialized():
    torch.cuda.synchronize()


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
  """Median wall time of `fn()` (outputs waited for), after `warmup` calls."""
  for _ in range(warmup):
    _sync(fn())
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    _sync(fn())
    times.append(time.perf_counter() - t)
  return statistics.median(times)


def format_table(title: str, rows: list[Row]) -> str:
  lines = [f"== {title} ==",
           f"{'case':52s} {'ours s':>9s} {'baseline s':>11s} {'speedup':>8s}  baseline"]
  for r in rows:
    lines.append(f"{r.name:52s} {r.ours_s:9.4f} {r.baseline_s:11.4f} "
                 f"{r.speedup:7.2f}x  {r.baseline}")
  return "\n".join(lines)


def to_json(rows: list[Row]) -> list[dict]:
  return [dict(r._asdict(), speedup=r.speedup) for r in rows]
