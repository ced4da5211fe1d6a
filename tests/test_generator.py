"""The deep generator prior (Nguyen et al. 2016b; issue 13): training lowers
its losses and resumes to the same state, the code stays clipped at every
step, the shipped generator drives every class of the shipped model to
p >= 0.9, and it sweeps like the other parameterizations."""

import json

from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import cifar_model, require_cifar
from cnnviz_jax import models
from cnnviz_jax import objectives as O
from cnnviz_jax import synthesis
from cnnviz_jax.models import predict
from cnnviz_jax.synthesis import _generator_train as gt
from cnnviz_jax.synthesis import engine
from experiments.configs import train_generator as train_config


def _colour_u8(n, size, seed=0):
  """Images of one random colour each: what a random classifier's code does
  encode (its 16 features respond to the colour), so a small generator can
  learn to reconstruct them in a few steps."""
  rng = np.random.default_rng(seed)
  colours = rng.uniform(0, 255, (n, 1, 1, 3))
  return np.broadcast_to(colours, (n, size, size, 3)).astype(np.uint8)


def _tiny_config(**overrides):
  """The smoke config on the test-only `tiny` classifier (16x16 input, 16-d
  relu6 code): a generator small enough for a dozen CPU steps a second."""
  c = train_config.get_config("smoke")
  c.model = "tiny"
  c.code_layer = "fc6"
  c.feature_layer = "relu2_1"
  c.widths = (32, 16, 8)
  c.disc_widths = (8, 16)
  c.batch_size = 16
  c.steps = 16
  c.steps_per_call = 2
  c.learning_rate = 1e-2
  c.warmup_steps = 2
  c.log_every = 8
  c.checkpoint_every = 8
  for k, v in overrides.items():
    c[k] = v
  return c


def _read_state(workdir):
  stored = gt._read_checkpoint(f"{workdir}/{gt.CHECKPOINT}")
  return stored["state"], stored["history"]


def test_training_lowers_losses_and_resumes_to_the_same_state(tmp_path):
  data = _colour_u8(64, 16)
  full = gt.train_generator(_tiny_config(), str(tmp_path / "full"), dataset=data)
  assert full["finished"] and full["steps_done"] == 16
  hist = full["history"]
  assert [h["step"] for h in hist] == [8, 16]
  # Means over 8 steps each: the first window against the last.
  for k in ("loss", "pixel", "feature"):
    assert hist[-1][k] < hist[0][k], (k, hist)
  assert hist[-1]["feature"] < 0.8 * hist[0]["feature"], hist
  # The same run in slices of 10 steps (not a multiple of the checkpoint
  # period), each slice a new call that resumes from the checkpoint.
  split = tmp_path / "split"
  for done in (10, 16):
    out = gt.train_generator(_tiny_config(steps_per_run=10), str(split),
                             dataset=data, output=str(tmp_path / "g.safetensors"))
    assert out["steps_done"] == done
  a = traverse_util.flatten_dict(_read_state(tmp_path / "full")[0], sep="/")
  b = traverse_util.flatten_dict(_read_state(split)[0], sep="/")
  assert sorted(a) == sorted(b)
  for k in a:
    np.testing.assert_allclose(b[k], a[k], rtol=1e-5, atol=1e-6, err_msg=k)
  # The finished run wrote a generator that loads and generates.
  prior = synthesis.load_generator(str(tmp_path / "g.safetensors"))
  assert prior.model == "tiny" and prior.code_layer == "fc6"
  assert prior.code_dim == 16 and np.all(prior.code_low <= prior.code_high)
  img = synthesis.generate(prior, prior.code_mean[None])
  assert img.shape == (1, 16, 16, 3)
  assert float(img.min()) >= 0 and float(img.max()) <= 1


def test_resume_refuses_a_changed_config(tmp_path):
  data = _colour_u8(16, 16)
  gt.train_generator(_tiny_config(steps=2, steps_per_run=2), str(tmp_path),
                     dataset=data)
  with pytest.raises(ValueError, match="learning_rate"):
    gt.train_generator(_tiny_config(steps=2, learning_rate=0.5), str(tmp_path),
                       dataset=data)
  with pytest.raises(ValueError, match="batch_size must be an integer > 0"):
    gt.check_config(_tiny_config(batch_size=0))


def _random_prior(code_dim=16, size=16, widths=(16, 8)):
  g = synthesis.Generator(size, widths).init(
      jax.random.PRNGKey(1), jnp.zeros((1, code_dim)))["params"]
  low = jnp.zeros(code_dim)
  high = jnp.linspace(0.1, 0.5, code_dim)
  return synthesis.GeneratorPrior(g, low, high, high / 2, high / 4, "tiny",
                                  "relu6", size, widths)


def test_code_is_clipped_at_every_step():
  model = models.load("tiny", key=jax.random.PRNGKey(0))
  prior = _random_prior()
  param = synthesis.generator(3, (16, 16), prior=prior)
  # A large step on the class logit would leave the narrow range at once.
  setup = engine.prepare(model, engine.Setup(O.class_logit(jnp.arange(3)),
                                             learning_rate=1.0), param, 5)
  tx = engine.make_optimizer("adam")
  state = engine.init_state(param, tx, jax.random.PRNGKey(2))
  at_bound = 0
  for i in range(5):
    state, _ = engine.run_steps(model, setup, param, state, jax.random.PRNGKey(3),
                                jnp.int32(i), optimizer=tx, num_steps=1)
    code = np.asarray(state.params)
    assert np.all(code >= np.asarray(prior.code_low)), i
    assert np.all(code <= np.asarray(prior.code_high) + 1e-7), i
    at_bound += int(np.sum(np.isclose(code, prior.code_high))
                    + np.sum(code == 0))
  assert at_bound > 0  # the clipping was exercised, not idle
  with pytest.raises(ValueError, match="starts from codes"):
    param.init(jax.random.PRNGKey(0), jnp.zeros((3, 16, 16, 3)))


def test_load_generator_names_missing_keys(tmp_path):
  prior = _random_prior()
  path = str(tmp_path / "g.safetensors")
  synthesis.save_generator(path, prior)
  back = synthesis.load_generator(path)
  np.testing.assert_array_equal(back.code_high, prior.code_high)
  assert back.widths == (16, 8)
  models.checkpoint.save(str(tmp_path / "bad.safetensors"),
                         {"generator": prior.params}, {
                             "model": "tiny", "code_layer": "relu6",
                             "image_size": "16", "widths": "[16, 8]"})
  with pytest.raises(ValueError, match="missing keys"):
    synthesis.load_generator(str(tmp_path / "bad.safetensors"))
  with pytest.raises(FileNotFoundError):
    synthesis.load_generator(str(tmp_path / "none.safetensors"))


# Steps of the class test. Measured with the shipped generator and the
# recipe's learning rate 0.1: at 100 steps the lowest class probability is
# 1.00, 0.91 and 1.00 for keys 0, 1, 2 (50 steps: 0.99, 0.87).
GENERATOR_STEPS = 100


def test_shipped_generator_reaches_every_class():
  model = cifar_model()
  images = synthesis.visualize_class(model, range(10), key=jax.random.PRNGKey(0),
                                     steps=GENERATOR_STEPS, recipe_name="generator")
  probs = np.asarray(predict.class_probabilities(model, images, list(range(10))))
  assert probs.min() >= 0.9, probs


def test_class_viz_launcher_with_the_generator(tmp_path):
  from experiments import class_viz
  from experiments.configs import class_viz as class_viz_config
  config = class_viz_config.get_config("smoke")
  config.recipe = "generator"
  config.steps = GENERATOR_STEPS
  metrics = class_viz.run(config, str(tmp_path))
  assert set(metrics["class_prob"]) == {"airplane", "automobile"}
  assert min(metrics["class_prob"].values()) >= 0.9, metrics
  assert (tmp_path / "classes.png").exists()


def test_generator_sweep_matches_single_runs():
  """Each sweep point reproduces its own single run, far from the other's.

  Not to 1e-4: Adam moves every code element by about the learning rate
  whatever its gradient's size, so an element whose gradient is near zero can
  take either sign from float rounding alone, and XLA:CPU's (Eigen's)
  convolutions round differently in the vmapped sweep and at batch 1. Measured
  at 4 steps: mean |difference| 4e-8 (lr 0.02) and 0.008 (lr 0.2, max 0.14)
  to the point's own single run, 0.31 to the other's.
  """
  model = cifar_model()
  recipes = [synthesis.recipe("generator", learning_rate=lr) for lr in (0.02, 0.2)]
  keys = jax.random.split(jax.random.PRNGKey(4), 2)
  obj = O.class_logit(3)
  swept = synthesis.sweep(model, obj, 1, recipes, keys=keys, steps=4)
  ones = [synthesis.visualize(model, obj, 1, key=keys[s], steps=4,
                              recipe_name="generator",
                              learning_rate=r["learning_rate"]).images
          for s, r in enumerate(recipes)]
  for s in range(2):
    own = np.abs(np.asarray(swept.images[s]) - np.asarray(ones[s])).mean()
    other = np.abs(np.asarray(swept.images[s]) - np.asarray(ones[1 - s])).mean()
    assert own < 0.02 and own < 0.1 * other, (s, own, other)
  assert not np.allclose(swept.images[0], swept.images[1], atol=1e-3)


def test_train_generator_launcher_smoke(tmp_path):
  """The launcher on its smoke config: CIFAR-10 images, the shipped model."""
  from experiments import train_generator
  config = train_config.get_config("smoke")
  config.data = require_cifar()
  out = tmp_path / "g.safetensors"
  m = train_generator.run(config, str(tmp_path / "work"), str(out))
  assert m["finished"] and m["steps_done"] == config.steps
  assert [h["step"] for h in m["history"]] == list(range(2, config.steps + 1, 2))
  assert json.load(open(tmp_path / "work" / "metrics.json"))["steps_done"] == config.steps
  prior = synthesis.load_generator(str(out))
  assert (prior.model, prior.code_layer, prior.code_dim) == ("cifar_vgg", "fc6", 256)
