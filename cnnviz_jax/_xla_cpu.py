"""The two CPU runtime settings the library makes at import: one XLA:CPU
option (`configure`, before JAX starts its backend) and glibc's malloc
settings (`configure_malloc`); and `release_compiled`, for long processes.

XLA:CPU in jax 0.10.2 hands convolutions and matrix products to YNNPACK.
YNNPACK's matrix products are the fastest here, but its convolutions were not:
on the 2-core EPYC, XLA's other convolution path (Eigen's) ran, per 3x3
convolution (ms, YNNPACK -> Eigen, median of 20, `--xla_cpu_...=individual_dot`
vs unset):

- batch 256, 16x16, 64->128 (the CIFAR VGG): forward 54.7 -> 30.5, input
  gradient 114 -> 61, weight gradient 213 -> 72;
- batch 4, 112x112, 64->128 (VGG16 conv2_1): input gradient 43 -> 39, weight
  gradient 120 -> 58; forward even (16.3 vs 17.1);
- batch 1, 64x64, 128->128 (a style network's residual block): forward even
  (2.8 vs 2.7), input gradient 6.9 -> 5.3;

while matrix products kept YNNPACK's speed (4096x4096x128: 446 GFLOP/s with
it, 412 without). So `configure` keeps YNNPACK for matrix products only:
`--xla_cpu_experimental_ynn_fusion_type=individual_dot`.

It only appends to `XLA_FLAGS`, only when the flag is not there already (a
user's own value wins: `...=individual_dot,individual_convolution` gives
convolutions back to YNNPACK) and only before the backend starts; XLA reads
`XLA_FLAGS` once, then. On GPU and TPU the flag has no effect.

malloc: XLA:CPU allocates every large temporary of a computation anew on
each call, and glibc's defaults hand such blocks back to the system when
they are freed (blocks from 32 MB up are always mapped and unmapped; the
heap's top is trimmed beyond 2x the adaptive threshold), so the next call
touches fresh pages again: one page fault per 4 KB, which on this VM cost
about as much as the arithmetic. A 9x9 16->3 convolution at 512x512 fed by
any in-graph op (a reflection pad, `x * 1.0001`) took 23-25 ms against 10-14
ms on the same array passed in; with the thresholds below, 10.5-12 ms
(median of 21, the 2-core EPYC, glibc 2.36). `configure_malloc` sets
`M_MMAP_THRESHOLD` and `M_TRIM_THRESHOLD` to 1 GiB: blocks below 1 GiB come
from the heap and freed memory stays there for the next call, as PyTorch's
CPU caching does; the process keeps up to its peak working set mapped.

The thresholds cover the main arena only: glibc gives other threads (XLA's
workers) arenas of their own, in heaps of at most 64 MB, and there the
32 MB activations of the CIFAR VGG at batch 128 were still faulted in anew
on stretches of calls: its first convolution (128x32x32x3 -> 64) took 12.2
ms with 6,146 page faults a call instead of 4.4 ms with 0-205, in a process
that had also run PyTorch (`MALLOC_ARENA_MAX=8` vs `=1`, 40 calls, median).
So `configure_malloc` also keeps one arena (`M_ARENA_MAX` 1; XLA's threads
allocate few, large blocks, so the shared lock is rarely contended):
the CIFAR VGG's training step at batch 128 went from 354 to 321 ms
(`python experiments/benchmark.py train --repeats=5`, PyTorch beside it
263 and 267 ms).

One arena is shared with every other library in the process. PyTorch's
allocations interleaved with ours fragment it: after VGG16 style-transfer
steps at 512 px in both libraries, the shipped stylizer at 256 px took
21-36 ms a call instead of 16.5, with glibc's `_int_malloc` and the arena
lock at 28% and ~13% of `perf record`'s samples (3% and 2% fresh);
`malloc_trim(0)` did not help. The same JAX steps alone left it unchanged
(stylizer 256 / 1024 px, CIFAR VGG training step: 21.7 / 316 / 247 ms
before, 20.3 / 310 / 240 after; thresholds of 64 MB instead of 1 GiB were
slower, 21.6 / 366 / 320). So `experiments/bench_common.isolated` runs
benchmark rows that mix the two in processes of their own.

A user who sets `MALLOC_MMAP_THRESHOLD_` or `MALLOC_TRIM_THRESHOLD_` (glibc's
own variables) or `CNNVIZ_JAX_KEEP_MALLOC=1` keeps glibc's behaviour, and
one who sets `MALLOC_ARENA_MAX` keeps those arenas; other C libraries are
left alone.
"""

import ctypes
import gc
import logging
import os
import sys

FLAG = "--xla_cpu_experimental_ynn_fusion_type"
VALUE = "individual_dot"


def configure() -> bool:
  """Adds `FLAG=VALUE` to `XLA_FLAGS` if it is not set and JAX has not
  started a backend yet.

  Returns:
    Whether the flag was added.
  """
  flags = os.environ.get("XLA_FLAGS", "")
  if FLAG.lstrip("-") in flags:
    return False
  try:
    from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
    started = xla_bridge.backends_are_initialized()
  except (ImportError, AttributeError):  # a JAX without this helper
    started = False
  if started:
    logging.getLogger(__name__).info(
        "JAX's backend started before cnnviz_jax was imported, so %s=%s "
        "(faster CPU convolutions, see cnnviz_jax/_xla_cpu.py) is not set; "
        "import cnnviz_jax first or put it in XLA_FLAGS.", FLAG, VALUE)
    return False
  os.environ["XLA_FLAGS"] = f"{flags} {FLAG}={VALUE}".strip()
  return True


MALLOC_THRESHOLD = 1 << 30  # bytes, for both thresholds
# glibc's mallopt parameters.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8
_OWN_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_",
                 "CNNVIZ_JAX_KEEP_MALLOC")


def configure_malloc() -> bool:
  """Raises glibc's mmap and trim thresholds to `MALLOC_THRESHOLD` and keeps
  one malloc arena (see the module docstring), unless the user set either
  threshold or `CNNVIZ_JAX_KEEP_MALLOC`, or the C library is not glibc; a
  user's `MALLOC_ARENA_MAX` keeps its arenas.

  Returns:
    Whether the settings were made.
  """
  if not sys.platform.startswith("linux") or any(
      os.environ.get(k) for k in _OWN_SETTINGS):
    return False
  try:
    libc = ctypes.CDLL(None)
    libc.gnu_get_libc_version  # glibc only  # pylint: disable=pointless-statement
    mallopt = libc.mallopt
  except (OSError, AttributeError):
    return False
  mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
  done = bool(mallopt(_M_MMAP_THRESHOLD, MALLOC_THRESHOLD) and
              mallopt(_M_TRIM_THRESHOLD, MALLOC_THRESHOLD))
  if done and not os.environ.get("MALLOC_ARENA_MAX"):
    done = bool(mallopt(_M_ARENA_MAX, 1))
  return done


MAP_COUNT_LIMIT = "/proc/sys/vm/max_map_count"


def _memory_areas() -> tuple[int, int] | None:
  """`(memory areas this process maps, the kernel's limit)`, or None where
  /proc does not say (not Linux)."""
  try:
    with open(MAP_COUNT_LIMIT) as f:
      limit = int(f.read())
    with open("/proc/self/maps", "rb") as f:
      return sum(1 for _ in f), limit
  except (OSError, ValueError):
    return None


def release_compiled(fraction: float = 0.5) -> bool:
  """Drops JAX's compiled programs (`jax.clear_caches()`) when this process
  maps more than `fraction` of the memory areas Linux allows it.

  XLA:CPU maps the machine code of every compiled program into memory areas
  of its own (three per kernel: code, constants, data; a 120-op function took
  28) and keeps them while JAX caches the program. Linux caps a process at
  `vm.max_map_count` areas (65,530 by default); past it the next compilation
  dies inside XLA (SIGSEGV or SIGABRT in `backend_compile_and_load`, no
  Python error). The test suite reached the cap in one pytest worker after
  ~10 minutes of compiling (areas counted every 10 s: 12k, 21k, 48k, 62.7k,
  then the crash at 64.5k), so the tests call this after each test and the
  gallery after each section; call it between stages of any long process that
  compiles many different programs. Programs still in use compile again on
  their next call.

  Args:
    fraction: in (0, 1]; the share of the limit that triggers the release.

  Returns:
    Whether the caches were cleared.
  """
  if not 0 < fraction <= 1:
    raise ValueError(f"fraction must be in (0, 1], got {fraction}.")
  areas = _memory_areas()
  if areas is None or areas[0] <= fraction * areas[1]:
    return False
  import jax  # pylint: disable=g-import-not-at-top
  jax.clear_caches()
  gc.collect()
  logging.getLogger(__name__).info(
      "%d of %d memory areas mapped: cleared JAX's compiled programs (now %s).",
      areas[0], areas[1], (_memory_areas() or ("?",))[0])
  return True
