"""Training: BatchNorm folding is exact, a run killed at random moments resumes
to the same weights and history as an uninterrupted one, resuming refuses a
changed config or data, bad configs and checkpoints fail before any work."""

import os
import shutil
import subprocess
import sys
import time

import chex
import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnviz_jax import models
from cnnviz_jax.models import core, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The run under test: `tiny` on an in-memory dataset (class c is a noisy
# colour c), 16 one-step calls per epoch so that kills land mid-epoch too.
_LIB = r"""
import numpy as np
from experiments.configs import train_cifar


def dataset():
  rng = np.random.RandomState(0)
  def make(n):
    y = np.arange(n) % 10
    base = np.stack([y * 25, 255 - y * 25, (y * 77) % 256], -1)[:, None, None]
    return np.clip(base + rng.randn(n, 16, 16, 3) * 40, 0, 255).astype(np.uint8), y
  return make(256), make(40)


def config(epochs_per_run=0):
  cfg = train_cifar.get_config()
  cfg.update(model="tiny", epochs=EPOCHS, batch_size=16, eval_every=1,
             steps_per_call=1, warmup_epochs=2, epochs_per_run=epochs_per_run)
  return cfg
"""
EPOCHS = 16
_CHILD = _LIB + r"""
import sys
from cnnviz_jax.models import train
out = train.train_and_evaluate(config(int(sys.argv[3])), sys.argv[1],
                               sys.argv[2] or None, dataset=dataset())
print(out)
"""
KILLS = 8


def _lib():
  ns = {"EPOCHS": EPOCHS}
  exec(_LIB, ns)  # the same data and config as the children
  return ns


def _spawn(workdir, cache, output="", epochs_per_run=0, **kw):
  # A persistent compilation cache: only the first child compiles.
  env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=cache,
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1")
  code = f"EPOCHS = {EPOCHS}\n" + _CHILD
  return subprocess.Popen(
      [sys.executable, "-c", code, str(workdir), str(output),
       str(epochs_per_run)], cwd=ROOT, env=env, **kw)


def _finish(proc):
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 0, err.decode()[-3000:]
  return out.decode()


def _stored(workdir):
  with open(os.path.join(workdir, train.CHECKPOINT), "rb") as f:
    return flax.serialization.msgpack_restore(f.read())


def _mtime(path):
  try:
    return os.stat(path).st_mtime_ns
  except FileNotFoundError:
    return None


def _without_seconds(history):
  return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """An uninterrupted run (it also fills the compilation cache)."""
  root = tmp_path_factory.mktemp("train")
  cache = str(root / "jax_cache")
  proc = _spawn(root / "reference", cache, root / "reference.safetensors",
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  assert "test_accuracy" in _finish(proc)
  return root, cache


def test_killed_run_resumes_to_the_uninterrupted_result(reference):
  root, cache = reference
  ref = _stored(root / "reference")
  epoch_s = float(np.median([h["seconds"] for h in ref["history"][1:]]))
  workdir = root / "killed"
  ckpt = workdir / train.CHECKPOINT
  # epochs_per_run stops a run cleanly after one epoch; its first checkpoint
  # measures how long a child takes to start.
  t0 = time.time()
  _finish(_spawn(workdir, cache, epochs_per_run=1, stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE))
  startup = os.stat(ckpt).st_mtime - t0
  assert int(_stored(workdir)["state"]["step"]) == 16
  rng = np.random.default_rng(0)
  kills, epochs_at_kill = 0, []
  while kills < KILLS:
    before = _mtime(ckpt)
    t0 = time.time()
    proc = _spawn(workdir, cache, stdout=subprocess.DEVNULL,
                  stderr=subprocess.DEVNULL)
    if kills % 2 == 0:
      # Anywhere in start-up: imports, cleanup, reading the checkpoint,
      # compiling, the first epoch.
      time.sleep(rng.uniform(0, startup + epoch_s))
    else:
      # Anywhere in training after progress: mid-epoch or mid-write.
      while _mtime(ckpt) == before and proc.poll() is None:
        time.sleep(0.002)
      startup = min(startup, time.time() - t0)
      time.sleep(rng.uniform(0, epoch_s))
    if proc.poll() is not None:
      break  # finished before the kill: nothing left to interrupt
    proc.kill()
    proc.wait()
    kills += 1
    epochs_at_kill.append(len(_stored(workdir)["history"]))
  print(f"kills: {kills}, epochs done at each kill: {epochs_at_kill}")
  assert kills == KILLS, f"the run finished after {kills} kills"
  assert epochs_at_kill[-1] < EPOCHS
  _finish(_spawn(workdir, cache, root / "killed.safetensors",
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE))
  got = _stored(workdir)
  chex.assert_trees_all_equal(got["state"], ref["state"])
  assert _without_seconds(got["history"]) == _without_seconds(ref["history"])
  assert [h["epoch"] for h in got["history"]] == list(range(1, EPOCHS + 1))
  a = models.load("tiny", str(root / "reference.safetensors"))
  b = models.load("tiny", str(root / "killed.safetensors"))
  chex.assert_trees_all_equal(a.params, b.params)
  assert not [f for f in os.listdir(workdir) if f.startswith(".tmp")]


def _copy(reference, tmp_path):
  workdir = tmp_path / "w"
  shutil.copytree(reference[0] / "reference", workdir)
  return workdir


def test_resume_refuses_a_changed_config_or_data(reference, tmp_path):
  lib = _lib()
  workdir = _copy(reference, tmp_path)
  cfg = lib["config"]()
  cfg.batch_size, cfg.peak_lr = 32, 0.5
  with pytest.raises(ValueError, match=r"(?s)batch_size: 16 -> 32.*peak_lr"):
    train.train_and_evaluate(cfg, str(workdir), dataset=lib["dataset"]())
  cfg = lib["config"]()
  cfg.epochs = EPOCHS - 1
  with pytest.raises(ValueError, match=f"below the {EPOCHS} epochs already done"):
    train.train_and_evaluate(cfg, str(workdir), dataset=lib["dataset"]())
  (x, y), test = lib["dataset"]()
  with pytest.raises(ValueError, match="data .contents differ"):
    train.train_and_evaluate(lib["config"](), str(workdir),
                             dataset=((255 - x, y), test))
  # Unchanged config, all epochs done: evaluates, trains nothing.
  out = train.train_and_evaluate(lib["config"](), str(workdir),
                                 dataset=lib["dataset"]())
  assert out["epochs"] == EPOCHS and 0.0 <= out["test_accuracy"] <= 1.0


def test_corrupt_checkpoint_and_stale_temp_files(reference, tmp_path):
  lib = _lib()
  workdir = _copy(reference, tmp_path)
  ckpt = workdir / train.CHECKPOINT
  ckpt.write_bytes(ckpt.read_bytes()[:1000])  # truncated
  (workdir / ".tmp-abc123checkpoint.msgpack").write_bytes(b"half")
  with pytest.raises(ValueError, match=f"checkpoint {ckpt} is corrupt.*move "
                     "the file away"):
    train.train_and_evaluate(lib["config"](), str(workdir),
                             dataset=lib["dataset"]())
  assert sorted(os.listdir(workdir)) == [train.CHECKPOINT, train.HISTORY]


@pytest.mark.parametrize("key,value,msg", [
    ("batch_size", 0, "batch_size must be an integer > 0"),
    ("epochs", 0, "epochs must be an integer > 0"),
    ("eval_every", 0, "eval_every must be an integer > 0"),
    ("steps_per_call", -1, "steps_per_call must be an integer > 0"),
    ("epochs_per_run", -1, "epochs_per_run must be an integer >= 0"),
    ("warmup_epochs", 14, r"warmup_epochs must be in \(0, 0.85 \* epochs\)"),
    ("model", "vgg17", "model must be one of"),
])
def test_bad_config_fails_before_any_work(tmp_path, key, value, msg):
  cfg = _lib()["config"]()
  cfg[key] = value
  workdir = tmp_path / "w"
  with pytest.raises(ValueError, match=msg):
    train.train_and_evaluate(cfg, str(workdir), dataset=None)
  assert not workdir.exists()


def test_batchnorm_folding_is_exact():
  layers = train.training_layers("tiny")
  assert [l.name for l in layers[:3]] == ["conv1_1", "bn1_1", "relu1_1"]
  net = core.SequentialNet(layers)
  params, stats = train._split(core.init_params(layers, jax.random.PRNGKey(0),
                                                (16, 16)))
  # Non-trivial statistics and affine parameters.
  perturb = lambda t, k: jax.tree_util.tree_map(
      lambda a: a + 0.3 * jax.random.uniform(k, a.shape), t)
  params = perturb(params, jax.random.PRNGKey(1))
  stats = perturb(stats, jax.random.PRNGKey(2))
  x = jax.random.uniform(jax.random.PRNGKey(3), (4, 16, 16, 3))
  model = models.build("tiny", train.fold_batchnorm(params, stats))
  ref, _ = net.apply({"params": train.merge(params, stats)}, model.normalize(x))
  out, _ = model(x)
  np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * float(jnp.abs(ref).max()))


def test_training_mode_batchnorm_uses_batch_statistics():
  layers = train.training_layers("tiny")
  net = core.SequentialNet(layers)
  full = core.init_params(layers, jax.random.PRNGKey(0), (16, 16))
  x = jax.random.normal(jax.random.PRNGKey(1), (8, 16, 16, 3))
  (_, taps), upd = net.apply({"params": full}, x, taps=("conv1_1", "bn1_1"),
                             batch_stats=True, mutable=["batch_stats"])
  conv = taps["conv1_1"]
  np.testing.assert_allclose(upd["batch_stats"]["bn1_1"]["mean"][0],
                             conv.mean(axis=(0, 1, 2)), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(upd["batch_stats"]["bn1_1"]["var"][0],
                             conv.var(axis=(0, 1, 2)), rtol=1e-5, atol=1e-6)
  # scale 1, bias 0: each channel is standardized by the batch's statistics.
  np.testing.assert_allclose(taps["bn1_1"].mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
  np.testing.assert_allclose(taps["bn1_1"].std(axis=(0, 1, 2)), 1.0, atol=1e-3)
