"""Sweeps over every number of a recipe: TV beta, blur sigma/period/radius,
jitter, clipping, weights, learning rate; each point equals its own run."""

from absl.testing import absltest
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from conftest import tiny_model
from cnnviz_jax import objectives as O
from cnnviz_jax import synthesis as S
from cnnviz_jax.synthesis import engine as opt
from cnnviz_jax.synthesis import param as P
from cnnviz_jax.synthesis import sweep_engine
from cnnviz_jax.synthesis import transforms as T

# Few steps on the tiny model keep the file fast; 3 steps include a blur
# for every period used (2, 3). Compilation dominates on CPU, and a rolled
# scan compiles fastest (7 s vs 18 s for 4 unrolled steps, measured here on
# a loaded 2-core machine).
STEPS = 3
LOOP = dict(chunk=STEPS, unroll=1)
HW = (16, 16)


def _images(n=2, seed=0):
  return jax.random.uniform(jax.random.PRNGKey(seed), (n, *HW, 3))


def _tv_grad_float64(x, beta):
  """The gradient of `objectives.tv(beta)` by hand, in float64."""
  x = np.asarray(x, np.float64)
  dx = x[:, :-1, 1:] - x[:, :-1, :-1]
  dy = x[:, 1:, :-1] - x[:, :-1, :-1]
  sq = dx * dx + dy * dy + 1e-8
  m = sq[0].size  # the mean runs over one image's [H-1, W-1, C] terms
  g = (beta / 2.0) * sq ** (beta / 2.0 - 1.0) / m
  out = np.zeros_like(x)
  out[:, :-1, 1:] += 2 * g * dx
  out[:, 1:, :-1] += 2 * g * dy
  out[:, :-1, :-1] -= 2 * g * (dx + dy)
  return out


class TracedSettingsTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_tv_gradient_vmapped_over_beta(self):
    x = _images(1)
    betas = jnp.array([1.0, 1.5, 2.0, 3.0])
    grad = self.variant(jax.vmap(
        lambda b: jax.grad(lambda x: O.tv(b)({"input": x}).sum())(x)))(betas)
    for b, g in zip(np.asarray(betas), grad):
      np.testing.assert_allclose(g, _tv_grad_float64(x, b), rtol=2e-3, atol=1e-7)
    # beta = 2 is the squared-difference sum: the value is exact.
    val = self.variant(jax.vmap(lambda b: O.tv(b)({"input": x})))(betas)
    np.testing.assert_allclose(val[2], O.tv(2.0)({"input": x}), rtol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_vmapped_transforms_equal_one_by_one(self):
    x = _images()
    key = jax.random.PRNGKey(3)
    g = jnp.zeros_like(x)
    pixels = jnp.array([0, 1, 3])
    sigmas = jnp.array([0.0, 0.4, 1.1])
    jit = T.jitter(pixels)
    blur = T.gaussian_blur(sigmas, every=jnp.ones(3, jnp.int32))
    self.assertEqual((jit.max_pixels, blur.max_radius), (3, 4))
    got_j = self.variant(jax.vmap(lambda t: t(key, x)))(jit)
    got_b = self.variant(jax.vmap(lambda t: t(x, g, 0)))(blur)
    for i in range(3):
      np.testing.assert_array_equal(got_j[i], T.jitter(int(pixels[i]))(key, x))
      np.testing.assert_allclose(
          got_b[i], T.gaussian_blur(float(sigmas[i]), every=1)(x, g, 0), atol=1e-6)
    np.testing.assert_array_equal(got_j[0], x)  # 0 pixels: no jitter
    np.testing.assert_array_equal(got_b[0], x)  # sigma 0: no blur

  def test_bad_values(self):
    with self.assertRaisesRegex(ValueError, "beta must be >= 1"):
      O.tv(jnp.array([1.0, 0.5]))
    with self.assertRaisesRegex(ValueError, "whole number of pixels"):
      T.jitter(1.5)
    with self.assertRaisesRegex(ValueError, "max_pixels 1 is below"):
      T.jitter(2, max_pixels=1)
    with self.assertRaisesRegex(ValueError, "tv_beta must be >= 1"):
      S.recipe(tv_beta=0.5)


class SweepTest(chex.TestCase):

  def test_recipe_sweep_equals_one_by_one(self):
    """Every numeric recipe entry varies, zero (component off) included."""
    m = tiny_model()
    obj = O.class_logit(jnp.array([2, 5]))
    # Two points (each extra one-by-one run is one more compilation): each
    # switches off some components the other uses.
    recipes = [S.recipe("yosinski", **o) for o in (
        dict(tv=0.5, tv_beta=1.2, l2=0.0, learning_rate=0.02, blur_sigma=0.0,
             jitter=0, roll=2, clip_norm=0.0, clip_contribution=20.0),
        dict(tv=0.0, l2=1.0, l1=0.3, learning_rate=0.1, blur_sigma=1.1,
             blur_every=2, jitter=3, roll=0, clip_norm=5.0, clip_contribution=0.0))]
    keys = jax.random.split(jax.random.PRNGKey(0), len(recipes))
    swept = S.sweep(m, obj, 2, recipes, keys=keys, steps=STEPS, size=HW, **LOOP)
    self.assertEqual(swept.images.shape, (len(recipes), 2, *HW, 3))
    p = P.pixels(2, HW)
    for i, r in enumerate(recipes):
      # `visualize` alone: the setup of this recipe only (components at zero
      # absent, own jitter pad and blur kernel).
      one = opt.optimize(m, S.setup(obj, r), p, key=keys[i], steps=STEPS, **LOOP)
      np.testing.assert_allclose(swept.images[i], one.images, atol=1e-5)
      np.testing.assert_allclose(swept.history["objective"][i],
                                 one.history["objective"], rtol=1e-5, atol=1e-5)

  def test_setup_sweep_of_every_transform(self):
    """Hand-built setups: roll, scale and rotation ranges, a blur with an
    explicit radius, projections, learning-rate schedules; the same
    transforms and operations in every point, different numbers."""
    m = tiny_model()
    p = P.pixels(1, HW)
    center = _images(1, seed=4)
    setups = [
        opt.Setup(O.channel("relu2_1", c) - w * O.tv(beta),
                  T.compose(T.roll(r), T.random_scale(1.0 - z, 1.0 + z),
                            T.random_rotate(deg)),
                  T.compose_steps(T.gaussian_blur(s, every=e, radius=rad, max_radius=4),
                                  T.project_linf(center, eps)), lr)
        for c, w, beta, r, z, deg, s, e, rad, eps, lr in (
            (1, 0.1, 1.0, 0, 0.0, 0.0, 0.3, 2, 1, 0.1, 0.05),
            (3, 1.0, 2.5, 2, 0.1, 10.0, 0.8, 3, 4, 0.3,
             optax.cosine_decay_schedule(0.1, STEPS)))]
    keys = jax.random.split(jax.random.PRNGKey(1), 2)
    swept = sweep_engine.sweep(m, setups, p, keys=keys, steps=STEPS, init=center, **LOOP)
    for i, s in enumerate(setups):
      one = opt.optimize(m, s, p, key=keys[i], steps=STEPS, init=center, **LOOP)
      np.testing.assert_allclose(swept.images[i], one.images, atol=1e-5)

  def test_varied_static_setting_raises(self):
    m = tiny_model()
    obj = O.class_logit(1)
    with self.assertRaisesRegex(ValueError, "'param' must be equal across the sweep"):
      S.setups(obj, [S.recipe("yosinski"), S.recipe("fft")])
    with self.assertRaisesRegex(ValueError, "'param' must be equal across the sweep"):
      S.sweep(m, obj, 1, [S.recipe("simonyan", param="fft"), S.recipe("simonyan")],
              keys=jax.random.split(jax.random.PRNGKey(0), 2), steps=1)
    setups = [opt.Setup(O.channel("relu1_1", 0)), opt.Setup(O.channel("relu2_1", 0))]
    with self.assertRaisesRegex(ValueError, r"terms\[0\]\.static: \('relu1_1',\) vs "
                                r"\('relu2_1',\) \(a static setting: it must be equal"):
      sweep_engine.sweep(m, setups, P.pixels(1, HW), keys=jax.random.split(jax.random.PRNGKey(0), 2),
                steps=1)
    with self.assertRaisesRegex(ValueError, r"setup\.transform: .* vs None"):
      sweep_engine.stack([opt.Setup(obj, T.jitter(1)), opt.Setup(obj)])


if __name__ == "__main__":
  absltest.main()
