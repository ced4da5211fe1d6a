"""Smoke tests: every synthesis and attack launcher runs in-process on its
smoke config (`run(config, workdir)`) and writes PNGs and JSON with the values
its docstring promises."""

import json

import numpy as np
import pytest

from conftest import require_cifar
from cnnviz_jax import viz
from cnnviz_jax.data import samples
from test_launchers import grid_size, read_png, smoke_config


def run(name, tmp_path, config=None):
  """`experiments.<name>.run` on `config` (default: the smoke config); checks
  that metrics.json holds the returned metrics and config.json the config."""
  import importlib
  config = config or smoke_config(name)
  metrics = importlib.import_module(f"experiments.{name}").run(config, str(tmp_path))
  assert json.load(open(tmp_path / "metrics.json")) == json.loads(json.dumps(metrics))
  stored = json.load(open(tmp_path / "config.json"))
  assert {k: stored[k] for k in config} == json.loads(json.dumps(config.to_dict()))
  return metrics, stored


def test_class_viz(tmp_path):
  m, stored = run("class_viz", tmp_path)
  assert list(m["class_prob"]) == ["airplane", "automobile"]
  # Five steps of the class objective already make cifar_vgg confident: a
  # launcher that optimized other classes than it names would fail here.
  assert all(p > 0.9 for p in m["class_prob"].values()), m
  assert stored["classes"] == [0, 1]
  assert stored["recipe_options"]["l2"] == 0.3  # the yosinski recipe
  read_png(tmp_path / "classes.png", grid_size(2, 1))


def test_neuron_viz(tmp_path):
  m, _ = run("neuron_viz", tmp_path)
  values = m["channel_mean_activation"]
  assert list(values) == ["0", "1"]
  # relu2_1 of a visualization that drives its centre unit up: positive.
  assert all(np.isfinite(v) and v > 0 for v in values.values()), values
  read_png(tmp_path / "neurons.png", grid_size(2, 1))


def test_inversion(tmp_path):
  m, _ = run("inversion", tmp_path)
  errors = m["relative_pixel_error"]
  assert list(errors) == ["relu1_1", "relu2_1"]
  assert all(0 < e < 3 for e in errors.values()), errors
  # The launcher's claim: shallower layers reconstruct better.
  assert errors["relu1_1"] < errors["relu2_1"], errors
  read_png(tmp_path / "inversion.png", grid_size(3, 1))


def test_deepdream(tmp_path):
  config = smoke_config("deepdream")
  m, _ = run("deepdream", tmp_path, config)
  assert m["layer_norm_after"] > m["layer_norm_before"] > 0
  source = viz.to_uint8(samples.default_photo(config.max_side))
  assert m["shape"] == list(source.shape)
  dream = np.asarray(read_png(tmp_path / "dream.png", source.shape[1::-1]), np.float32)
  change = np.abs(dream - source).mean()
  assert 0.5 < change < 64, change  # changed, but still the photograph
  read_png(tmp_path / "before_after.png",
           grid_size(2, 1, cell=4.0, aspect=source.shape[0] / source.shape[1]))


def test_multifaceted(tmp_path):
  config = smoke_config("multifaceted")
  config.data = require_cifar()
  m, _ = run("multifaceted", tmp_path, config)
  # Smoke: 10 test images of the target class, in k = 2 non-empty clusters.
  assert sum(m["cluster_sizes"]) == 10 and len(m["cluster_sizes"]) == config.k
  assert min(m["cluster_sizes"]) >= 1
  assert len(m["facet_class_prob"]) == config.k
  assert all(p > 0.5 for p in m["facet_class_prob"]), m  # facets of the class
  assert 0.0 <= m["facet_own_centre_share"] <= 1.0 and m["facet_spread_ratio"] >= 0
  read_png(tmp_path / "facets.png", grid_size(config.k, 2))


def test_adversarial(tmp_path):
  config = smoke_config("adversarial")
  config.data = require_cifar()
  m, _ = run("adversarial", tmp_path, config)
  attack, fooling = m["attack"], m["fooling"]
  assert attack["n"] == config.n and fooling["n"] == config.fool_images
  # Attacked images are correctly classified ones, changed within eps.
  assert attack["clean_accuracy"] == 1.0
  assert attack["max_linf"] <= config.eps + 1e-6
  assert attack["adv_accuracy"] == pytest.approx(1 - attack["success_rate"])
  assert attack["success_rate"] >= 0.8, attack  # PGD at 8/255, even in 2 steps
  assert fooling["max_linf"] <= config.fool_eps + 1e-6
  assert 0.0 <= fooling["confident_success_rate"] <= fooling["success_rate"] <= 1.0
  assert 0.0 <= fooling["target_prob_min"] <= fooling["target_prob_mean"] <= 1.0
  read_png(tmp_path / "fooling.png", grid_size(config.fool_show, 3))
