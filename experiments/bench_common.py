"""Timing helpers shared by the benchmarks (median of repeats, side by side)."""

import statistics
import time
from typing import Callable, NamedTuple, Optional

import jax


class Row(NamedTuple):
  name: str
  ours_s: float      # median seconds, this library
  baseline_s: float  # median seconds, PyTorch/Captum on the identical network
  baseline: str
  # Median of the per-pair ratios baseline/ours when the two sides were timed
  # alternately (`paired_times`); None: the ratio of the medians.
  paired_speedup: Optional[float] = None

  @property
  def speedup(self) -> float:
    if self.paired_speedup is not None:
      return self.paired_speedup
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


# Calls shorter than this get untimed calls right before each timed one,
# for at least SETTLE_S: PyTorch's OpenMP threads keep spinning for a few
# milliseconds after an operator ends (libgomp's default spin count), on the
# same 2 cores. A 4.0 ms JAX convolution (128x32x32x3 -> 64, 3x3) took
# 7.0-7.6 ms timed right after a PyTorch call, 5.5-6.0 ms after one settling
# call, 4.0-4.4 ms from the third on (median of 11). PyTorch's own call is
# fastest while its threads still spin. With settling, each side is timed in
# the steady state it reaches when run alone, as in a loop.
SETTLE_BELOW_S = 1.0
SETTLE_S = 0.02


def paired_times(fns: dict[str, Callable[[], object]], repeats: int,
                 warmup: int = 1) -> dict[str, list[float]]:
  """Wall times of each `fn()` (outputs waited for), the functions called in
  turn, repeat by repeat, so that load from other jobs on a shared machine
  falls on all of them alike; `warmup` untimed rounds first (compilation).
  A function whose last warm-up call took under `SETTLE_BELOW_S` is called
  untimed right before each timed call, at least once and for at least
  `SETTLE_S` (see above)."""
  short = {name: True for name in fns}
  for _ in range(warmup):
    for name, fn in fns.items():
      t = time.perf_counter()
      _sync(fn())
      short[name] = time.perf_counter() - t < SETTLE_BELOW_S
  times = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      if short[name]:
        start = time.perf_counter()
        _sync(fn())
        while time.perf_counter() - start < SETTLE_S:
          _sync(fn())
      t = time.perf_counter()
      _sync(fn())
      times[name].append(time.perf_counter() - t)
  return times


def isolated(fn: Callable[..., object], *args):
  """`fn(*args)` in a fresh Python process (multiprocessing's "spawn"), its
  result returned; on CPU only (a second process would find the GPU's memory
  taken by this one's JAX), else called here. `fn` must be importable by
  name (a module-level function); its output goes to this process's
  streams.

  Why: the library's one malloc arena is shared with PyTorch in this
  process, and the heap earlier rows leave there slowed later rows of ours
  up to 2x (figures in `cnnviz_jax/_xla_cpu.py`'s docstring)."""
  if jax.devices()[0].platform != "cpu":
    return fn(*args)
  import multiprocessing
  with multiprocessing.get_context("spawn").Pool(1) as pool:
    return pool.apply(fn, args)


def paired_row(name: str, ours: list[float], baseline: list[float],
               baseline_name: str) -> Row:
  """A Row from paired times: medians, and the median per-pair speed-up."""
  ratios = [b / o for o, b in zip(ours, baseline)]
  return Row(name, statistics.median(ours), statistics.median(baseline),
             baseline_name, statistics.median(ratios))


def load_average() -> str:
  """The 1/5/15-minute load averages and the core count, for the record."""
  import os
  one, five, fifteen = os.getloadavg()
  return f"load average {one:.1f} {five:.1f} {fifteen:.1f} on {os.cpu_count()} cores"


def format_table(title: str, rows: list[Row]) -> str:
  lines = [f"== {title} ==",
           f"{'case':52s} {'ours s':>9s} {'baseline s':>11s} {'speedup':>8s}  baseline"]
  for r in rows:
    lines.append(f"{r.name:52s} {r.ours_s:9.4f} {r.baseline_s:11.4f} "
                 f"{r.speedup:7.2f}x  {r.baseline}")
  return "\n".join(lines)


def to_json(rows: list[Row]) -> list[dict]:
  return [dict(r._asdict(), speedup=r.speedup) for r in rows]
