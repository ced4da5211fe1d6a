"""Tests of the image-synthesis engine and techniques (issue 4)."""

import functools
import os

from absl.testing import absltest, parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np

from conftest import CIFAR_TAR as CIFAR, cifar_model, tiny_model
from cnnviz_jax import image
from cnnviz_jax import objectives as O
from cnnviz_jax.synthesis import engine as opt
from cnnviz_jax.synthesis import sweep_engine
from cnnviz_jax.synthesis import param as P
from cnnviz_jax import objectives as R
from cnnviz_jax import synthesis as S
from cnnviz_jax.synthesis import transforms as T

# Few steps keep the file fast on CPU; the defaults of the library are longer.
CLASS_STEPS = 60
INVERT_STEPS = 100


def smooth_images(n, hw, seed=0):
  """Project-made natural-ish images: blurred noise, spatially correlated."""
  x = np.random.default_rng(seed).uniform(0, 1, (n, *hw, 3)).astype(np.float32)
  x = image.blur(jnp.asarray(x), 2.0, 6)
  x = (x - x.min()) / (x.max() - x.min())
  return jnp.asarray(x, jnp.float32)


class ObjectiveTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_arithmetic_matches_manual(self):
    m = tiny_model()
    x = smooth_images(2, (16, 16))
    obj = O.resolve(0.5 * O.channel("relu2_1", 3) - 1e-2 * R.l2()
                    + 2.0 * O.class_logit(jnp.array([1, 4])), m, (16, 16))

    def value(x):
      logits, acts = m.apply(m.params, x, taps=("relu2_1",))
      return obj({"input": x, "logits": logits, **acts}), logits, acts

    got, logits, acts = self.variant(value)(x)
    want = (0.5 * acts["relu2_1"][..., 3].mean(axis=(1, 2))
            - 1e-2 * jnp.mean(jnp.square(x - 0.5), axis=(1, 2, 3))
            + 2.0 * logits[jnp.arange(2), jnp.array([1, 4])])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    self.assertEqual(obj.taps, ("relu2_1", "input", "logits"))

  def test_tv_and_neuron(self):
    x = jnp.zeros((1, 4, 4, 3)).at[0, :, 2:, :].set(1.0)
    # Only the column pairs (1, 2) differ: 3 rows x 1 column of 3 channels
    # with dx^2 = 1, beta = 2 -> mean over the [3, 3, 3] grid = 9 / 27.
    v = R.tv(2.0)({"input": x})
    np.testing.assert_allclose(v, [9 / 27], rtol=1e-5)
    acts = {"relu1_1": jnp.arange(2 * 3 * 3 * 4, dtype=jnp.float32).reshape(2, 3, 3, 4)}
    n = O.neuron("relu1_1", jnp.array([1, 2]), 1, 2)(acts)
    np.testing.assert_allclose(n, acts["relu1_1"][jnp.arange(2), 1, 2, jnp.array([1, 2])])

  def test_bad_inputs(self):
    m = tiny_model()
    key = jax.random.PRNGKey(0)
    px = P.pixels(1, (16, 16))
    with self.assertRaisesRegex(ValueError, "unknown layer 'nope'"):
      opt.optimize(m, O.channel("nope", 0), px, key=key, steps=1)
    with self.assertRaisesRegex(ValueError, "channel .* out of range"):
      opt.optimize(m, O.channel("relu1_1", 8), px, key=key, steps=1)
    with self.assertRaisesRegex(ValueError, "neuron position"):
      opt.optimize(m, O.neuron("relu1_1", 0, 99, 0), px, key=key, steps=1)
    with self.assertRaisesRegex(ValueError, "class indices out of range"):
      S.visualize_class(m, [10], key=key, steps=1)
    with self.assertRaisesRegex(ValueError, "steps must be a positive int"):
      opt.optimize(m, O.class_logit(0), px, key=key, steps=0)
    with self.assertRaisesRegex(ValueError, "l2 must be >= 0"):
      S.visualize_class(m, [0], key=key, steps=1, l2=-1.0)
    with self.assertRaisesRegex(ValueError, "learning_rate must be > 0"):
      opt.optimize(m, O.class_logit(0), px, key=key, steps=1, learning_rate=0.0)
    with self.assertRaisesRegex(ValueError, "grad_norm"):
      opt.optimize(m, O.class_logit(0), px, key=key, steps=1, grad_norm="l7")
    with self.assertRaisesRegex(ValueError, "unknown recipe"):
      S.visualize_class(m, [0], key=key, steps=1, recipe_name="magic")
    # sigma 0 means no blur (a sweep may switch the blur off at some points).
    with self.assertRaisesRegex(ValueError, "blur sigma must be >= 0"):
      T.gaussian_blur(-1.0)
    with self.assertRaisesRegex(ValueError, "beta must be >= 1"):
      R.tv(0.5)
    with self.assertRaisesRegex(ValueError, "octaves"):
      S.deepdream(m, smooth_images(1, (16, 16))[0], "relu1_1", key=key, octaves=0)
    with self.assertRaisesRegex(ValueError, "feature target"):
      opt.optimize(m, O.feature_match("relu1_1", jnp.zeros((1, 3, 3, 8))), px,
                   key=key, steps=1)


class TransformTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(
      ("jitter", T.jitter(3)), ("roll", T.roll(3)),
      ("scale", T.random_scale(0.9, 1.1)), ("rotate", T.random_rotate(10.0)),
      ("compose", T.compose(T.jitter(2), T.random_scale(), T.random_rotate())))
  def test_shape_and_determinism(self, t):
    x = smooth_images(2, (20, 24))
    f = self.variant(t)
    a, b = f(jax.random.PRNGKey(1), x), f(jax.random.PRNGKey(1), x)
    self.assertEqual(a.shape, x.shape)
    np.testing.assert_array_equal(a, b)
    self.assertTrue(np.all(np.isfinite(a)))

  @chex.variants(with_jit=True, without_jit=True)
  def test_step_ops(self):
    x = smooth_images(2, (16, 16))
    g = jax.random.normal(jax.random.PRNGKey(0), x.shape)
    blur = self.variant(lambda x, s: T.gaussian_blur(1.0, every=2)(x, g, s))
    np.testing.assert_array_equal(blur(x, 0), x)  # only every 2nd step
    const = jnp.full_like(x, 0.3)
    np.testing.assert_allclose(blur(const, 1), const, atol=1e-6)
    clip = self.variant(lambda x: T.clip_small_norm(50.0)(x, g, 0))(x)
    frac = jnp.mean(jnp.all(clip == 0.5, axis=-1))
    self.assertBetween(float(frac), 0.45, 0.55)
    proj = T.project_linf(x, 0.01)(x + 0.5 * g, g, 0)
    self.assertLessEqual(float(jnp.max(jnp.abs(proj - x))), 0.01 + 1e-6)
    proj2 = T.project_l2(x, 0.5)(x + g, g, 0)
    norms = jnp.sqrt(jnp.sum(jnp.square(proj2 - x), axis=(1, 2, 3)))
    self.assertLessEqual(float(jnp.max(norms)), 0.5 + 1e-5)

  def test_fft_param(self):
    p = P.fft(2, (16, 20))
    params = p.init(jax.random.PRNGKey(0))
    img = p.to_image(params)
    self.assertEqual(img.shape, (2, 16, 20, 3))
    self.assertTrue(np.all((img > 0) & (img < 1)))


class EngineTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_jit_equals_nojit(self):
    m = tiny_model()
    obj = O.resolve(O.class_logit(jnp.array([0, 3])) - 0.1 * R.tv(), m, (16, 16))
    p = P.pixels(2, (16, 16))
    params = p.init(jax.random.PRNGKey(0))
    o = opt.make_optimizer("adam")
    state = opt._init_opt_state(o, params, 0.05)
    run = functools.partial(opt.run_steps, optimizer=o, num_steps=4)
    got = self.variant(lambda pr, st: run(m, obj, p, T.jitter(1), T.gaussian_blur(0.5, 2),
                                          pr, st, jax.random.PRNGKey(1), 0))(params, state)
    want = opt.optimize(m, O.class_logit(jnp.array([0, 3])) - 0.1 * R.tv(), p,
                        key=jax.random.PRNGKey(0), steps=4, transform=T.jitter(1),
                        step_ops=T.gaussian_blur(0.5, 2))
    # optimize splits its key into (init, loop); recompute with those keys.
    ik, lk = jax.random.split(jax.random.PRNGKey(0))
    params = p.init(ik)
    state = opt._init_opt_state(o, params, 0.05)
    got = self.variant(lambda pr, st: run(m, obj, p, T.jitter(1), T.gaussian_blur(0.5, 2),
                                          pr, st, lk, 0))(params, state)
    np.testing.assert_allclose(got[0], want.images, atol=1e-5)
    np.testing.assert_allclose(got[2]["objective"], want.history["objective"], rtol=1e-4,
                               atol=1e-4)

  def test_determinism_and_keys(self):
    m = tiny_model()
    f = functools.partial(S.visualize_class, m, [1, 2], steps=5)
    a, b = f(key=jax.random.PRNGKey(3)), f(key=jax.random.PRNGKey(3))
    c = f(key=jax.random.PRNGKey(4))
    np.testing.assert_array_equal(a, b)
    self.assertGreater(float(jnp.max(jnp.abs(a - c))), 1e-4)

  def test_sweep_equals_one_by_one(self):
    m = tiny_model()
    p = P.pixels(2, (16, 16))
    target = jnp.array([2, 5])
    setups, keys = [], jax.random.split(jax.random.PRNGKey(0), 3)
    for l2, sigma, lr in ((0.1, 0.4, 0.05), (0.5, 0.8, 0.02), (0.0, 1.0, 0.1)):
      setups.append(opt.Setup(O.class_logit(target) - l2 * R.l2(), T.jitter(2),
                              T.gaussian_blur(sigma, every=2, radius=3), lr))
    swept = sweep_engine.sweep(m, setups, p, keys=keys, steps=6)
    self.assertEqual(swept.images.shape, (3, 2, 16, 16, 3))
    for i, s in enumerate(setups):
      one = opt.optimize(m, s.objective, p, key=keys[i], steps=6,
                         learning_rate=s.learning_rate, transform=s.transform,
                         step_ops=s.step_ops)
      np.testing.assert_allclose(swept.images[i], one.images, atol=2e-5)
      np.testing.assert_allclose(swept.history["objective"][i],
                                 one.history["objective"], rtol=1e-4, atol=1e-4)

  def test_no_nan_long_run(self):
    m = tiny_model()
    done = []
    res = S.visualize(m, O.class_logit(jnp.arange(3)), 3, key=jax.random.PRNGKey(0),
                      steps=2000, recipe_name="yosinski")
    self.assertTrue(np.all(np.isfinite(res.images)))
    self.assertTrue(np.all(np.isfinite(res.history["objective"])))
    self.assertEqual(res.history["objective"].shape, (2000, 3))
    r2 = opt.optimize(m, O.channel("relu2_1", jnp.arange(2)), P.fft(2, (16, 16)),
                      key=jax.random.PRNGKey(1), steps=2000, chunk=50,
                      progress=lambda n, h: done.append(n))
    self.assertTrue(np.all(np.isfinite(r2.images)))
    self.assertEqual(done[-1], 2000)
    self.assertLen(done, 40)


class TechniqueTest(chex.TestCase):

  def test_class_visualization_cifar(self):
    m = cifar_model()
    res = S.visualize(m, O.class_logit(jnp.arange(10)), 10, key=jax.random.PRNGKey(0),
                      steps=CLASS_STEPS)
    imgs = res.images
    self.assertEqual(imgs.shape, (10, 32, 32, 3))
    self.assertTrue(np.all((imgs >= 0) & (imgs <= 1)))
    probs = jax.nn.softmax(m(imgs)[0])[jnp.arange(10), jnp.arange(10)]
    print("class-viz probabilities", np.round(np.asarray(probs), 4))
    self.assertTrue(np.all(probs >= 0.9), msg=f"probabilities {probs}")
    # Rises in expectation: means over windows of 10 steps never fall by more
    # than jitter noise, and the end is far above the start.
    h = np.asarray(res.history["objective"]).mean(axis=1)
    w = h[: len(h) // 10 * 10].reshape(-1, 10).mean(axis=1)
    self.assertGreater(w[-1], w[0] + 1.0)
    self.assertTrue(np.all(np.diff(w) > -0.1 * (np.abs(w).max())), msg=str(w))
    # The public contract gives the same images.
    np.testing.assert_allclose(
        S.visualize_class(m, range(10), key=jax.random.PRNGKey(0), steps=CLASS_STEPS),
        imgs, atol=1e-6)

  def test_inversion_ladder(self):
    m = cifar_model()
    x = smooth_images(2, (32, 32), seed=1)
    if os.path.exists(CIFAR):
      from cnnviz_jax import data
      xs, _ = data.load_cifar10(CIFAR, "test", limit=1)
      x = jnp.asarray(xs[:2].astype(np.float32) / 255.0)
    errs = []
    for layer in ("relu1_1", "relu2_2", "relu3_2", "fc7"):
      r = S.invert(m, x, layer, key=jax.random.PRNGKey(0), steps=INVERT_STEPS)
      self.assertEqual(r.shape, x.shape)
      errs.append(float(jnp.mean(S.reconstruction_error(x, r))))
    print("inversion error ladder", dict(zip(("relu1_1", "relu2_2", "relu3_2", "fc7"), errs)))
    self.assertTrue(np.all(np.diff(errs) > 0), msg=str(errs))
    self.assertLess(errs[0], 0.3)

  def test_deepdream(self):
    m = cifar_model()
    img = smooth_images(1, (40, 52), seed=2)[0]
    out = S.deepdream(m, img, "relu3_1", key=jax.random.PRNGKey(0), octaves=2,
                      steps=5)
    self.assertEqual(out.shape, img.shape)
    self.assertTrue(np.all((out >= 0) & (out <= 1)))

    def norm(x):
      return float(jnp.linalg.norm(m(x[None], taps=("relu3_1",), logits=False)[1]["relu3_1"]))
    self.assertGreater(norm(out), 1.2 * norm(img))

  def test_kmeans_and_multifaceted(self):
    pts = jnp.concatenate([jnp.zeros((5, 2)), jnp.ones((5, 2)) * 10]) + 0.01 * jnp.arange(10)[:, None]
    centers, a = S.kmeans(pts, 2, key=jax.random.PRNGKey(0))
    self.assertEqual(len(set(np.asarray(a[:5]).tolist())), 1)
    self.assertNotEqual(int(a[0]), int(a[9]))
    m = tiny_model()
    facets, means, assign = S.multifaceted(m, smooth_images(6, (16, 16)), 3, k=2,
                                           key=jax.random.PRNGKey(0), steps=5,
                                           layer="fc6")
    self.assertEqual(facets.shape, (2, 16, 16, 3))
    self.assertEqual(assign.shape, (6,))


if __name__ == "__main__":
  absltest.main()
