"""Training of the shipped model: BatchNorm folding is exact, checkpoints
resume to the same result as an uninterrupted run, the data readers agree."""

import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from cnnviz_jax import models
from cnnviz_jax import data
from cnnviz_jax.models import train
from experiments.configs import train_cifar as train_config
from cnnviz_jax.models import zoo


@pytest.fixture(scope="module")
def jpeg_folder(tmp_path_factory):
  """A tiny CIFAR-like folder: class c is a noisy image of hue c."""
  root = tmp_path_factory.mktemp("cifar")
  rng = np.random.RandomState(0)
  for split, n in [("train", 8), ("test", 3)]:
    for c, name in enumerate(zoo.CIFAR10_CLASSES):
      os.makedirs(root / split / name)
      for i in range(n):
        base = np.array([c * 25, 255 - c * 25, (c * 77) % 256], np.float32)
        im = np.clip(base + rng.randn(32, 32, 3) * 20, 0, 255).astype(np.uint8)
        Image.fromarray(im).save(root / split / name / f"{i:04d}.jpg")
  return str(root)


def _cfg(path, epochs):
  cfg = train_config.get_config()
  cfg.data, cfg.epochs, cfg.batch_size, cfg.eval_every = path, epochs, 16, 1
  cfg.steps_per_call = 2
  return cfg


def test_folder_reader(jpeg_folder):
  x, y = data.load_cifar10(jpeg_folder, "test")
  assert x.shape == (30, 32, 32, 3) and x.dtype == np.uint8
  np.testing.assert_array_equal(y, np.repeat(np.arange(10), 3))
  x2, y2 = data.load_cifar10(jpeg_folder, "train", limit=2)
  assert x2.shape[0] == 20
  with pytest.raises(ValueError, match="split must be"):
    data.load_cifar10(jpeg_folder, "val")


def test_resume_equals_uninterrupted_run(jpeg_folder, tmp_path):
  full = train.train_and_evaluate(_cfg(jpeg_folder, 2), str(tmp_path / "a"),
                                  str(tmp_path / "a.safetensors"))
  interrupted = _cfg(jpeg_folder, 2)
  interrupted.epochs_per_run = 1
  assert train.train_and_evaluate(interrupted, str(tmp_path / "b")) == {"epochs_done": 1}
  assert not os.path.exists(tmp_path / "b.safetensors")
  resumed = train.train_and_evaluate(_cfg(jpeg_folder, 2), str(tmp_path / "b"),
                                     str(tmp_path / "b.safetensors"))
  assert full["test_accuracy"] == resumed["test_accuracy"]
  a = models.load("cifar_vgg", str(tmp_path / "a.safetensors"))
  b = models.load("cifar_vgg", str(tmp_path / "b.safetensors"))
  chex.assert_trees_all_close(a.params, b.params, rtol=1e-5, atol=1e-6)
  history = json.load(open(tmp_path / "b" / "history.json"))
  assert [h["epoch"] for h in history] == [1, 2]
  assert not [f for f in os.listdir(tmp_path / "b") if f.startswith(".tmp")]


def test_batchnorm_folding_is_exact():
  net = train.TrainNet()
  key = jax.random.PRNGKey(0)
  v = net.init(key, jnp.zeros((1, 32, 32, 3)), train=False)
  # Non-trivial statistics and affine parameters.
  perturb = lambda t, k: jax.tree_util.tree_map(
      lambda a: a + 0.3 * jax.random.uniform(k, a.shape), t)
  params = perturb(v["params"], jax.random.PRNGKey(1))
  stats = perturb(v["batch_stats"], jax.random.PRNGKey(2))
  x = jax.random.uniform(jax.random.PRNGKey(3), (4, 32, 32, 3))
  ref = net.apply({"params": params, "batch_stats": stats}, x, train=False)
  model = models.build("cifar_vgg", train.fold_batchnorm(params, stats))
  out, _ = model(x)
  np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * float(jnp.abs(ref).max()))
