"""The XLA:CPU option the library sets at import (`cnnviz_jax/_xla_cpu.py`):
convolutions leave YNNPACK, matrix products keep it, a user's own value wins,
and nothing changes once JAX's backend has started."""

import os
import subprocess
import sys

_PROBE = """
import os, sys
import jax
if sys.argv[1] == "started":
  jax.numpy.ones(1).block_until_ready()      # the backend starts first
import cnnviz_jax
import jax.numpy as jnp
from jax import lax
conv = jax.jit(lambda x, w: lax.conv_general_dilated(
    x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")))
dot = jax.jit(jnp.dot)
c = conv.lower(jnp.ones((1, 16, 16, 32)), jnp.ones((3, 3, 32, 32))).compile()
d = dot.lower(jnp.ones((256, 256)), jnp.ones((256, 256))).compile()
print(os.environ.get("XLA_FLAGS", ""))
print("ynn" in c.as_text(), "ynn" in d.as_text())
"""


def _probe(mode: str, xla_flags=None) -> tuple[str, str]:
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env["JAX_PLATFORMS"] = "cpu"
  if xla_flags is not None:
    env["XLA_FLAGS"] = xla_flags
  out = subprocess.run([sys.executable, "-c", _PROBE, mode], env=env,
                       capture_output=True, text=True, timeout=120, check=True)
  flags, fused = out.stdout.rstrip("\n").splitlines()[-2:]
  return flags, fused


def test_import_moves_convolutions_off_ynnpack():
  flags, fused = _probe("fresh")
  assert flags == "--xla_cpu_experimental_ynn_fusion_type=individual_dot"
  assert fused == "False True"  # conv not through YNNPACK, dot still


def test_appends_to_existing_flags():
  flags, fused = _probe("fresh", "--xla_force_host_platform_device_count=2")
  assert flags == ("--xla_force_host_platform_device_count=2 "
                   "--xla_cpu_experimental_ynn_fusion_type=individual_dot")
  assert fused == "False True"


def test_users_own_value_wins():
  own = "--xla_cpu_experimental_ynn_fusion_type=individual_dot,individual_convolution"
  flags, fused = _probe("fresh", own)
  assert flags == own
  assert fused == "True True"  # YNNPACK convolutions, as the user asked


def test_no_change_after_the_backend_started():
  flags, fused = _probe("started")
  assert flags == ""
  assert fused == "True True"  # jax's default: YNNPACK for both


# The malloc thresholds: a freed 256 MB block stays mapped (no page faults
# on the next call's temporaries) under the library's setting, and is handed
# back to the system under glibc's defaults or when the user opts out.
_MALLOC_PROBE = """
import ctypes, sys
import cnnviz_jax
from cnnviz_jax import _xla_cpu
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
def rss_mb():
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * 4096 / 2 ** 20
size = 256 * 2 ** 20
p = libc.malloc(size)
ctypes.memset(p, 1, size)           # touch every page
before = rss_mb()
libc.free(p)
print(_xla_cpu.configure_malloc(), round(before - rss_mb()))
"""


def _malloc_probe(**env_extra):
  env = {k: v for k, v in os.environ.items()
         if k not in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_",
                      "CNNVIZ_JAX_KEEP_MALLOC")}
  env.update(JAX_PLATFORMS="cpu", **env_extra)
  out = subprocess.run([sys.executable, "-c", _MALLOC_PROBE], env=env,
                       capture_output=True, text=True, timeout=120, check=True)
  configured, released = out.stdout.split()[-2:]
  return configured == "True", int(released)


def test_import_keeps_large_freed_blocks_mapped():
  if not sys.platform.startswith("linux"):
    import pytest
    pytest.skip("glibc's malloc thresholds: Linux only")
  configured, released = _malloc_probe()
  assert configured and released < 16  # MB handed back: none to speak of
  configured, released = _malloc_probe(CNNVIZ_JAX_KEEP_MALLOC="1")
  assert not configured and released > 200  # glibc unmaps the block


# One malloc arena: a thread's allocations come from the main arena (glibc
# otherwise gives threads arenas of their own, where XLA's large temporaries
# were page-faulted anew on many calls; see `_xla_cpu`). `malloc_stats`
# prints one "Arena i:" block per arena.
_ARENA_PROBE = """
import ctypes, threading
import cnnviz_jax
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
t = threading.Thread(target=lambda: libc.malloc(1 << 20))
t.start(); t.join()
libc.malloc_stats()
"""


def _arenas(**env_extra) -> int:
  env = {k: v for k, v in os.environ.items()
         if k not in ("MALLOC_ARENA_MAX", "CNNVIZ_JAX_KEEP_MALLOC")}
  env.update(JAX_PLATFORMS="cpu", **env_extra)
  out = subprocess.run([sys.executable, "-c", _ARENA_PROBE], env=env,
                       capture_output=True, text=True, timeout=120, check=True)
  return sum(line.startswith("Arena ") for line in out.stderr.splitlines())


def test_import_keeps_one_malloc_arena():
  if not sys.platform.startswith("linux"):
    import pytest
    pytest.skip("glibc's malloc arenas: Linux only")
  assert _arenas() == 1
  assert _arenas(MALLOC_ARENA_MAX="8") == 2        # the user's setting wins
  assert _arenas(CNNVIZ_JAX_KEEP_MALLOC="1") == 2  # opted out: glibc's own


def test_release_compiled_unmaps_compiled_code():
  """XLA:CPU maps each compiled program's code into memory areas of its own
  (Linux caps a process at `vm.max_map_count`); `release_compiled` drops the
  programs, and their areas, only past its share of that cap."""
  import jax
  import jax.numpy as jnp
  import pytest
  from cnnviz_jax import _xla_cpu
  if _xla_cpu._memory_areas() is None:
    pytest.skip("needs /proc/self/maps and /proc/sys/vm/max_map_count (Linux)")
  with pytest.raises(ValueError, match="fraction"):
    _xla_cpu.release_compiled(0)
  assert not _xla_cpu.release_compiled(1.0)
  def program(x, k):
    for i in range(20):  # ~60 kernels
      x = jnp.cumsum(jnp.sin(x) @ x, 0) + i + k
    return x

  x = jnp.ones((8, 8))
  before = _xla_cpu._memory_areas()[0]
  for k in range(4):
    jax.jit(program, static_argnums=1)(x, k).block_until_ready()
  compiled = _xla_cpu._memory_areas()[0]
  assert compiled > before + 40, (before, compiled)
  assert _xla_cpu.release_compiled(1e-9)
  assert _xla_cpu._memory_areas()[0] < compiled - 40
