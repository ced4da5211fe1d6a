"""Occlusion by incremental evaluation (`attribution._incremental`) equals the
full recompute up to float rounding, and is chosen only where it applies."""

import functools

from absl.testing import absltest, parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np

from conftest import cifar_model, tiny_model
from cnnviz_jax import attribution as A
from cnnviz_jax import models
from cnnviz_jax import objectives as O
from cnnviz_jax.attribution import _incremental as I
from cnnviz_jax.models import core


def _alexnet_like_layers():
  """AlexNet's geometry (11x11 stride 4 padding 2, max pool 3/2, 5x5 padding
  2), a frozen batch norm, dropout, an unpadded 1x1 stride-2 conv (stride
  larger than its kernel) and an adaptive average pool."""
  return (
      core.conv("conv1", 8, 11, 4, 2), core.Layer("bn1", "bn"),
      core.relu("relu1"), core.maxpool("pool1", 3, 2),
      core.conv("conv2", 12, 5, 1, 2), core.relu("relu2"),
      core.Layer("drop2", "dropout"),
      core.conv("conv3", 12, 1, 2, 0), core.relu("relu3"),
      core.conv("conv4", 16, 3, 1, 1), core.relu("relu4"),
      core.maxpool("pool4", 3, 2),
      core.Layer("avgpool", "adaptive_avgpool", "", (("size", (2, 2)),)),
      core.Layer("flatten", "flatten"), core.dense("fc5", 10))


@functools.lru_cache(None)
def alexnet_like():
  layers = _alexnet_like_layers()
  params = core.init_params(layers, jax.random.PRNGKey(0), (99, 107))
  # Non-trivial batch norm statistics (the initializer's are the identity).
  keys = jax.random.split(jax.random.PRNGKey(1), 4)
  params = dict(params, bn1={
      "scale": 1 + 0.2 * jax.random.normal(keys[0], (8,)),
      "bias": 0.1 * jax.random.normal(keys[1], (8,)),
      "mean": 0.1 * jax.random.normal(keys[2], (8,)),
      "var": jax.random.uniform(keys[3], (8,), minval=0.5, maxval=2.0)})
  return core.Model(params=params, name="alexnet_like", layers=layers,
                    class_names=tuple(str(i) for i in range(10)),
                    input_size=(99, 107), mean=(0.485, 0.456, 0.406),
                    std=(0.229, 0.224, 0.225), min_size=63)


def _images(n, h, w, seed=1):
  return jax.random.uniform(jax.random.PRNGKey(seed), (n, h, w, 3))


def _check(test, model, x, targets, run=None, **kw):
  """Incremental (forced) vs full recompute, within 1e-5 of the score scale;
  fails if the incremental evaluation does not apply."""
  obj = A.target_objective(model, x, targets,
                           probabilities=kw.get("probabilities", True))
  window = kw.get("window", (8, 8))
  window = (window, window) if isinstance(window, int) else window
  test.assertIsNotNone(I.choose(model, x.shape[1:3], window, obj, True))
  run = run or (lambda f: f())
  full = run(functools.partial(A.occlusion, model, x, targets,
                               _incremental_path=False, **kw))
  inc = run(functools.partial(A.occlusion, model, x, targets,
                              _incremental_path=True, **kw))
  scale = max(float(jnp.abs(A.target_scores(
      model, x, targets, probabilities=kw.get("probabilities", True))).max()),
              float(jnp.abs(full).max()))
  np.testing.assert_allclose(inc, full, rtol=0, atol=1e-5 * scale)
  return inc


class TinyTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(
      ("borders", (6, 4), (5, 3), "mean", 2),
      ("overlap", 3, 2, "zeros", 1),
      ("stride_gt_window", 3, 5, "blur", 4),
      ("const_logits", (5, 7), (2, 3), 0.3, 7),
      ("one_pixel", 1, 3, "mean", 100))
  def test_equals_full(self, window, stride, fill, chunk):
    model, x = tiny_model(), _images(3, 16, 16)
    t = jnp.asarray(np.arange(3) % 10)
    for probabilities in (True, False):
      _check(self, model, x, t, run=lambda f: self.variant(f)(),
             window=window, stride=stride, fill=fill,
             probabilities=probabilities, chunk_size=chunk)

  @parameterized.named_parameters(("odd", 17, 19, (5, 6), (4, 3)),
                                  ("odd_small", 9, 11, (2, 3), (3, 2)))
  def test_odd_sizes(self, h, w, window, stride):
    model = tiny_model()
    x = _images(2, h, w, seed=4)
    p = I.plan(model.layers, (h, w), window, None)
    self.assertIsNotNone(p)
    _check(self, model, x, np.array([1, 7]), window=window, stride=stride,
           chunk_size=3)

  def test_window_is_the_image(self):
    model, x = tiny_model(), _images(2, 16, 16)
    obj = A.target_objective(model, x, np.array([0, 1]))
    self.assertIsNone(I.choose(model, (16, 16), (16, 16), obj, True))
    a = A.occlusion(model, x, np.array([0, 1]), window=16, stride=4)
    b = A.occlusion(model, x, np.array([0, 1]), window=16, stride=4,
                    _incremental_path=False)
    np.testing.assert_array_equal(a, b)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(("neuron", ("conv2_1", 3, 2, 1), "conv2_1"),
                                  ("relu_neuron", ("relu1_1", 5, 7, 3), "relu1_1"),
                                  ("channel", ("pool2", 11), "pool2"))
  def test_intermediate_target(self, target, layer):
    model, x = tiny_model(), _images(3, 16, 16)
    obj = A.target_objective(model, x, target)
    p = I.choose(model, (16, 16), (4, 4), obj, True)
    # The region stops at the layer read, so that its map is exact.
    self.assertLessEqual(p.stop - 1, model.layer_index(layer))
    _check(self, model, x, target, run=lambda f: self.variant(f)(),
           window=4, stride=3, fill="blur", chunk_size=5)

  def test_mixed_objective(self):
    model, x = tiny_model(), _images(2, 16, 16)
    t = jnp.array([2, 5])
    obj = O.class_logit(t) + 0.5 * O.neuron("relu2_1", 3, 1, 2)
    _check(self, model, x, obj, window=5, stride=3, chunk_size=4)

  def test_input_objective_full_path(self):
    model, x = tiny_model(), _images(2, 16, 16)
    obj = A.target_objective(model, x, O.class_logit(jnp.array([1, 2])) + O.l2())
    self.assertIsNone(I.choose(model, (16, 16), (4, 4), obj, True))
    out = A.occlusion(model, x, obj, window=4, stride=4, _incremental_path=True)
    ref = A.occlusion(model, x, obj, window=4, stride=4, _incremental_path=False)
    np.testing.assert_array_equal(out, ref)


class AlexNetLikeTest(parameterized.TestCase):

  def test_geometry_needs_cropping(self):
    # The unpadded stride-2 1x1 conv and the floor-mode pools leave input rows
    # outside the slice read: the masked overlay is exercised.
    model = alexnet_like()
    p = I.plan(model.layers, (99, 107), (12, 14), None)
    self.assertFalse(all(s.contained for s in p.steps))
    # Up to conv3 on regions; conv4's output changes entirely.
    self.assertEqual(model.layers[p.stop].name, "conv4")

  @parameterized.named_parameters(("window12", (12, 14), (9, 10), "mean", 3),
                                  ("window30", 30, 23, "zeros", 1),
                                  ("const", (7, 5), (31, 29), 0.7, 16))
  def test_equals_full(self, window, stride, fill, chunk):
    model, x = alexnet_like(), _images(2, 99, 107, seed=2)
    for probabilities in (True, False):
      _check(self, model, x, np.array([3, 8]), window=window, stride=stride,
             fill=fill, probabilities=probabilities, chunk_size=chunk)

  def test_intermediate_target(self):
    model, x = alexnet_like(), _images(2, 99, 107, seed=3)
    _check(self, model, x, ("relu2", 4, 5, 6), window=12, stride=20,
           chunk_size=6)


class CifarTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(("w8", 8, 12, 1, True), ("w12", 12, 5, 13, False))
  def test_equals_full(self, window, stride, chunk, probabilities):
    model, x = cifar_model(), _images(3, 32, 32, seed=5)
    _check(self, model, x, jnp.array([0, 3, 9]),
           run=lambda f: self.variant(f)(), window=window, stride=stride,
           fill=0.5, probabilities=probabilities, chunk_size=chunk)

  def test_intermediate_target(self):
    model, x = cifar_model(), _images(2, 32, 32, seed=6)
    _check(self, model, x, ("relu2_2", 5, 3, 4), window=8, stride=6,
           fill="mean", chunk_size=2)

  def test_default_takes_the_fast_path(self):
    model, x = cifar_model(), _images(2, 32, 32)
    obj = A.target_objective(model, x, np.array([1, 2]), probabilities=True)
    self.assertIsNotNone(I.choose(model, (32, 32), (8, 8), obj))
    # A 20x20 patch on 32x32 saves almost nothing: the full recompute.
    self.assertIsNone(I.choose(model, (32, 32), (20, 20), obj))


class ChoiceTest(absltest.TestCase):

  def test_vgg16_rule(self):
    # Parameter shapes suffice for the rule (no weights are made).
    spec = models.registry.spec("vgg16")
    params = jax.eval_shape(lambda k: core.init_params(spec.layers, k, (224, 224)),
                            jax.random.PRNGKey(0))
    model = models.registry.build("vgg16", params)
    obj = O.resolve(O.class_logit(jnp.zeros(4, jnp.int32)), model, (224, 224))
    p = I.choose(model, (224, 224), (64, 64), obj)
    self.assertIsNotNone(p)
    full, inc = I.macs(model, (224, 224), p)
    self.assertLess(inc, 0.35 * full)
    self.assertIsNone(I.choose(model, (224, 224), (200, 200), obj))

  def test_wrapped_model_full_path(self):
    w = jax.random.normal(jax.random.PRNGKey(0), (3, 3, 3, 6))
    d = jax.random.normal(jax.random.PRNGKey(1), (6, 5))

    def apply_fn(p, x):
      h = jax.lax.conv_general_dilated(x, p["w"], (1, 1), "SAME",
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))
      return jnp.maximum(h, 0.0).mean(axis=(1, 2)) @ p["d"]

    model = models.from_function(apply_fn, {"w": w, "d": d}, name="plain",
                                 input_size=(12, 12), min_size=4)
    x = _images(2, 12, 12)
    obj = A.target_objective(model, x, np.array([1, 4]))
    self.assertIsNone(I.choose(model, (12, 12), (4, 4), obj, True))
    out = A.occlusion(model, x, np.array([1, 4]), window=4, stride=4)
    self.assertEqual(out.shape, (2, 3, 3))


if __name__ == "__main__":
  absltest.main()
