"""Shared test fixtures. Tests run on CPU; torch uses the machine's 2 cores."""

import functools
import os
import shutil
import tempfile

import pytest

# A compilation cache for this run only, shared by the pytest workers and
# the launchers' subprocesses (they inherit the environment): tests compile
# the same programs from fresh closures, in both workers and in
# subprocesses, and the cache keys on the program, not the Python function.
# Three heavy tests took 75 s without it and 65.5 s with a cold one (47 s
# warm). Created by the first process (the xdist controller, before the
# workers start) and removed when it ends; each run starts cold, as CI does.
# A user's own cache directory wins. Set before jax is imported (it reads
# these variables then).
_OWN_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if _OWN_CACHE:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="cnnviz_jit_cache_")
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import cnnviz_jax  # noqa: E402 (after the cache's environment)

# Most of this suite's time is XLA:CPU compiling small computations, and most
# of that is LLVM optimizing XLA's own loop kernels (convolutions and matrix
# products are library calls either way). Tests compile them at -O0: the
# smoke gallery ran in 44 s instead of 54 s, the whole suite (2 workers) in
# 9:32 instead of 12:08. Values match -O2's to float rounding: the CIFAR
# VGG's saliency bit for bit, the stylizer's output within 3.6e-7 (XLA's
# elementwise kernels, e.g. the sigmoid, vectorize differently); every
# comparison in the suite has a tolerance or compares runs under the same
# setting. A user's own setting wins.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                             + " --xla_backend_optimization_level=0").strip()


def host_devices_env(devices: int, **extra) -> dict:
  """This process's environment for a subprocess with `devices` simulated CPU
  devices, keeping the suite's XLA flags (a bare `XLA_FLAGS` would compile
  the subprocess's programs at -O2, as the suite does not)."""
  flags = os.environ.get("XLA_FLAGS", "")
  return dict(os.environ, **extra, XLA_FLAGS=(
      flags + f" --xla_force_host_platform_device_count={devices}").strip())


def pytest_unconfigure(config):
  if _OWN_CACHE and not hasattr(config, "workerinput"):  # the first process
    shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CIFAR_TAR = os.path.join(ROOT, "..", "shared", "data", "cifar10-jpeg.tar")
SHARED_IMAGES = os.path.join(ROOT, "..", "shared", "data", "images")


_PASSED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
  report = yield
  if report.when == "call":
    item.stash[_PASSED] = report.passed
  return report


@pytest.fixture(autouse=True)
def _remove_tmp_path_of_passed_test(request):
  """Deletes a passed test's `tmp_path` as soon as it ends (a failed one's is
  kept to look at). The conversion tests write ~1 GB each; pytest by default
  keeps every folder of the last three runs (~30 GB), which filled CI's disk."""
  yield
  path = request.node.funcargs.get("tmp_path")
  if path is not None and request.node.stash.get(_PASSED, False):
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True)
def _release_compiled_programs():
  """After each test, drops JAX's compiled programs once the worker maps half
  the memory areas Linux allows (`cnnviz_jax.release_compiled`): with every
  program cached, a worker crashed in XLA's compiler at the 65,530-area cap
  about ten minutes into the suite."""
  yield
  cnnviz_jax.release_compiled()


def tmpdir(test, prefix: str = "cnnviz_") -> str:
  """A fresh folder removed after the unittest-style `test` (absltest's
  create_tempdir needs absl flags, which pytest does not parse)."""
  path = tempfile.mkdtemp(prefix=prefix)
  test.addCleanup(shutil.rmtree, path, ignore_errors=True)
  return path


@functools.lru_cache(maxsize=None)
def cifar_model():
  """The shipped `cifar_vgg` (loaded once per session)."""
  from cnnviz_jax import models
  return models.load("cifar_vgg")


@functools.lru_cache(maxsize=None)
def tiny_model():
  """The test-only `tiny` model with random weights from PRNGKey(0)."""
  import jax
  from cnnviz_jax import models
  return models.load("tiny", key=jax.random.PRNGKey(0))


def require_cifar() -> str:
  """Path of the CIFAR-10 JPEG tar, or skip the test with the reason."""
  if not os.path.exists(CIFAR_TAR):
    pytest.skip(f"CIFAR-10 not found at {CIFAR_TAR} (only CI and the "
                "developers' machines have ../shared/data)")
  return CIFAR_TAR


@pytest.fixture(scope="session")
def cifar_path():
  return require_cifar()


@pytest.fixture(scope="session")
def cifar_test_set():
  """(uint8 images [10000, 32, 32, 3], int32 labels) of the CIFAR-10 test split."""
  from cnnviz_jax.data import load_cifar10
  return load_cifar10(require_cifar(), "test")
