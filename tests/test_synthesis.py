"""Tests of the image-synthesis engine, its pieces and techniques."""

import functools
import os
from unittest import mock

from absl.testing import absltest, parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from conftest import CIFAR_TAR as CIFAR, cifar_model, tiny_model
from cnnviz_jax import image
from cnnviz_jax import objectives as O
from cnnviz_jax import synthesis as S
from cnnviz_jax.synthesis import engine as opt
from cnnviz_jax.synthesis import param as P
from cnnviz_jax.synthesis import sweep_engine
from cnnviz_jax.synthesis import transforms as T

# Few steps keep the file fast on CPU; the defaults of the library are longer.
CLASS_STEPS = 60
INVERT_STEPS = 100
HW = (16, 16)


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
    x = smooth_images(2, HW)
    obj = O.resolve(0.5 * O.channel("relu2_1", 3) - 1e-2 * O.l2()
                    + 2.0 * O.class_logit(jnp.array([1, 4])), m, HW)

    def value(x):
      logits, acts = m.apply(m.params, x, taps=("relu2_1",))
      return opt.objective_values(m, obj, x), logits, acts

    got, logits, acts = self.variant(value)(x)
    want = (0.5 * acts["relu2_1"][..., 3].mean(axis=(1, 2))
            - 1e-2 * jnp.mean(jnp.square(x - 0.5), axis=(1, 2, 3))
            + 2.0 * logits[jnp.arange(2), jnp.array([1, 4])])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # Priors read the image itself, the network the transformed one.
    seen = 0.5 * x + 0.1
    split = opt.objective_values(m, obj, x, seen)
    np.testing.assert_allclose(
        split, opt.objective_values(m, obj, seen) + 1e-2 * (
            jnp.mean(jnp.square(seen - 0.5), axis=(1, 2, 3))
            - jnp.mean(jnp.square(x - 0.5), axis=(1, 2, 3))), rtol=1e-5, atol=1e-6)

  def test_bad_inputs(self):
    m = tiny_model()
    key = jax.random.PRNGKey(0)
    px = P.pixels(1, HW)

    def run(obj, **kw):
      return opt.optimize(m, opt.Setup(obj, **kw), px, key=key, steps=1)
    with self.assertRaisesRegex(ValueError, "unknown layer 'nope'"):
      run(O.channel("nope", 0))
    with self.assertRaisesRegex(ValueError, "channel .* out of range"):
      run(O.channel("relu1_1", 8))
    with self.assertRaisesRegex(ValueError, "neuron position"):
      run(O.neuron("relu1_1", 0, 99, 0))
    with self.assertRaisesRegex(ValueError, "feature target"):
      run(O.feature_match("relu1_1", jnp.zeros((1, 3, 3, 8))))
    with self.assertRaisesRegex(ValueError, "learning_rate must be > 0"):
      run(O.class_logit(0), learning_rate=0.0)
    with self.assertRaisesRegex(ValueError, "schedule must give"):
      run(O.class_logit(0), learning_rate=lambda i: -1.0)
    with self.assertRaisesRegex(ValueError, "steps must be a positive int"):
      opt.optimize(m, opt.Setup(O.class_logit(0)), px, key=key, steps=0)
    with self.assertRaisesRegex(ValueError, "setup must be an engine.Setup"):
      opt.optimize(m, O.class_logit(0), px, key=key, steps=1)
    with self.assertRaisesRegex(ValueError, "step_ops .* act on pixels"):
      opt.optimize(m, opt.Setup(O.class_logit(0), step_ops=T.gaussian_blur(1.0)),
                   P.fft(1, HW), key=key, steps=1)
    with self.assertRaisesRegex(ValueError, "key=None works only with an init"):
      opt.optimize(m, opt.Setup(O.class_logit(0)), px, key=None, steps=1)
    with self.assertRaisesRegex(ValueError, "key must be one JAX PRNG key"):
      S.visualize_class(m, [0], key=0, steps=1, size=HW)
    with self.assertRaisesRegex(ValueError, "init has shape"):
      opt.optimize(m, opt.Setup(O.class_logit(0)), px, key=key, steps=1,
                   init=smooth_images(2, HW))
    with self.assertRaisesRegex(ValueError, "normalize must be one of"):
      opt.make_optimizer("sgd", "l7")
    with self.assertRaisesRegex(ValueError, "unknown optimizer 'nadam'"):
      opt.optimize(m, opt.Setup(O.class_logit(0)), px, key=key, steps=1,
                   optimizer="nadam")
    with self.assertRaisesRegex(ValueError, "class indices out of range"):
      S.visualize_class(m, [10], key=key, steps=1)
    with self.assertRaisesRegex(ValueError, "channels must be integers"):
      S.visualize_neuron(m, "relu1_1", [1.5], key=key, steps=1, size=HW)
    with self.assertRaisesRegex(ValueError, "l2 must be >= 0"):
      S.visualize_class(m, [0], key=key, steps=1, l2=-1.0)
    with self.assertRaisesRegex(ValueError, "unknown recipe"):
      S.visualize_class(m, [0], key=key, steps=1, recipe_name="magic")
    with self.assertRaisesRegex(ValueError, "unknown recipe options"):
      S.invert(m, smooth_images(1, HW), "relu1_1", key=key, steps=1, beta=2.0)
    # sigma 0 means no blur (a sweep may switch the blur off at some points).
    with self.assertRaisesRegex(ValueError, "blur sigma must be >= 0"):
      T.gaussian_blur(-1.0)
    with self.assertRaisesRegex(ValueError, "unknown transform 'warp'"):
      T.get("warp", 1)
    with self.assertRaisesRegex(ValueError, "beta must be >= 1"):
      O.tv(0.5)
    with self.assertRaisesRegex(ValueError, "octaves"):
      S.deepdream(m, smooth_images(1, HW)[0], "relu1_1", key=key, octaves=0)
    with self.assertRaisesRegex(ValueError, "k must be an int in"):
      S.cluster_images(jnp.zeros((3, 2)), 4, key=key)


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
  def test_reflect_pad_equals_numpy_reflect(self):
    x = np.random.default_rng(0).standard_normal((2, 5, 7, 3)).astype(np.float32)
    pad = self.variant(image.reflect_pad, static_argnums=1)
    # p = 4 and 6 exceed the 5 rows: the fallback that reflects repeatedly.
    for p in (0, 1, 2, 4, 6):
      np.testing.assert_array_equal(
          pad(x, p), np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), mode="reflect"),
          err_msg=f"p={p}")

  @chex.variants(with_jit=True, without_jit=True)
  def test_jitter_is_a_window_of_the_reflect_padded_input(self):
    x = smooth_images(2, (12, 14))
    padded = np.pad(np.asarray(x), ((0, 0), (3, 3), (3, 3), (0, 0)), mode="reflect")
    windows = {(oy, ox): padded[:, oy:oy + 12, ox:ox + 14]
               for oy in range(7) for ox in range(7)}
    seen = set()
    for seed in range(12):
      out = np.asarray(self.variant(T.jitter(3))(jax.random.PRNGKey(seed), x))
      hits = [o for o, w in windows.items() if np.array_equal(out, w)]
      self.assertLen(hits, 1)
      seen.add(hits[0])
    self.assertGreater(len(seen), 3)  # the offset is random, not fixed

  @chex.variants(with_jit=True, without_jit=True)
  def test_roll_is_a_permutation(self):
    # Distinct values: a permutation of the pixels keeps their multiset and
    # is a circular shift of rows and columns by at most the roll range.
    x = jnp.arange(2 * 9 * 11 * 3, dtype=jnp.float32).reshape(2, 9, 11, 3)
    for seed in range(5):
      out = np.asarray(self.variant(T.roll(2))(jax.random.PRNGKey(seed), x))
      np.testing.assert_array_equal(np.sort(out, axis=None), np.sort(x, axis=None))
      shifts = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                if np.array_equal(out, np.roll(x, (dy, dx), axis=(1, 2)))]
      self.assertLen(shifts, 1)

  @chex.variants(with_jit=True, without_jit=True)
  def test_identity_settings(self):
    x = smooth_images(2, (13, 17))
    key = jax.random.PRNGKey(0)
    for t in (T.random_rotate(0.0), T.random_scale(1.0, 1.0), T.jitter(0), T.roll(0)):
      np.testing.assert_allclose(self.variant(t)(key, x), x, atol=1e-6)

  def test_registry(self):
    x = smooth_images(1, HW)
    key = jax.random.PRNGKey(2)
    np.testing.assert_array_equal(T.get("jitter", 2)(key, x), T.jitter(2)(key, x))
    self.assertContainsSubset(
        {"jitter", "roll", "random_scale", "random_rotate", "gaussian_blur",
         "clip_small_norm", "clip_small_contribution", "project_linf",
         "project_l2"}, set(T.REGISTRY))

  @chex.variants(with_jit=True, without_jit=True)
  def test_step_ops(self):
    x = smooth_images(2, HW)
    g = jax.random.normal(jax.random.PRNGKey(0), x.shape)
    blur = self.variant(lambda x, s: T.gaussian_blur(1.0, every=2)(x, g, s))
    np.testing.assert_array_equal(blur(x, 0), x)  # only every 2nd step
    np.testing.assert_allclose(blur(x, 1), image.blur(x, 1.0, 3), atol=1e-6)
    const = jnp.full_like(x, 0.3)
    np.testing.assert_allclose(blur(const, 1), const, atol=1e-6)
    clip = self.variant(lambda x: T.clip_small_norm(50.0)(x, g, 0))(x)
    frac = jnp.mean(jnp.all(clip == 0.5, axis=-1))
    self.assertBetween(float(frac), 0.45, 0.55)
    proj = T.project_linf(x, 0.01)(x + 0.5 * g, g, 0)
    self.assertLessEqual(float(jnp.max(jnp.abs(proj - x))), 0.01 + 1e-6)
    proj2 = T.project_l2(x, 0.5)(x + g, g, 0)
    norms = jnp.sqrt(jnp.sum(jnp.square(proj2 - x), axis=(1, 2, 3)))
    np.testing.assert_allclose(norms, 0.5, rtol=1e-5)  # g is far outside

  @chex.variants(with_jit=True, without_jit=True)
  def test_fft_param_round_trip(self):
    x = 0.02 + 0.96 * smooth_images(2, (16, 20))
    for p in (P.fft(2, (16, 20)), P.fft(2, (16, 20), decorrelate=False, decay=1.5)):
      back = self.variant(lambda img: p.to_image(p.init(None, img)))(x)
      np.testing.assert_allclose(back, x, atol=2e-5)
      noise = p.to_image(p.init(jax.random.PRNGKey(0)))
      self.assertEqual(noise.shape, (2, 16, 20, 3))
      self.assertTrue(np.all((noise > 0) & (noise < 1)))


class EngineTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_run_steps_equals_optimize(self):
    m = tiny_model()
    setup = opt.Setup(O.class_logit(jnp.array([0, 3])) - 0.1 * O.tv(), T.jitter(1),
                      T.gaussian_blur(0.5, 2), 0.05)
    p = P.pixels(2, HW)
    want = opt.optimize(m, setup, p, key=jax.random.PRNGKey(0), steps=4)
    # optimize splits its key into (init, loop) and resolves the setup.
    ik, lk = jax.random.split(jax.random.PRNGKey(0))
    o = opt.make_optimizer("adam")
    state = opt.init_state(p, o, ik)
    ready = opt.prepare(m, setup, p, 4)
    run = functools.partial(opt.run_steps, optimizer=o, num_steps=4)
    got, hist = self.variant(lambda st: run(m, ready, p, st, lk, 0))(state)
    np.testing.assert_allclose(got.params, want.images, atol=1e-5)
    np.testing.assert_allclose(hist["objective"], want.history["objective"],
                               rtol=1e-4, atol=1e-4)

  def test_determinism_and_keys(self):
    m = tiny_model()
    f = functools.partial(S.visualize_class, m, [1, 2], steps=5, size=HW)
    a, b = f(key=jax.random.PRNGKey(3)), f(key=jax.random.PRNGKey(3))
    c = f(key=jax.random.PRNGKey(4))
    np.testing.assert_array_equal(a, b)
    self.assertGreater(float(jnp.max(jnp.abs(a - c))), 1e-4)

  def test_optimizers_and_schedules(self):
    m = tiny_model()
    x = smooth_images(2, HW)
    setup = opt.Setup(O.class_logit(jnp.array([1, 2])), learning_rate=0.01)
    p = P.pixels(2, HW)
    key = jax.random.PRNGKey(0)
    # "sign" is a step of learning_rate along the gradient's sign: one step
    # from the image moves every pixel with a gradient by exactly 0.01 (none
    # reach 0 or 1), uphill.
    start = 0.1 + 0.8 * x
    one = opt.optimize(m, setup, p, key=None, steps=1, optimizer="sign", init=start)
    moved = np.abs(np.asarray(one.images - start))
    self.assertAlmostEqual(float(moved.max()), 0.01, places=6)
    self.assertGreater(np.mean(np.abs(moved - 0.01) < 1e-6), 0.9)
    logit = lambda im: m(im)[0][jnp.arange(2), jnp.array([1, 2])]
    self.assertTrue(np.all(np.asarray(logit(one.images) > logit(start))))
    # A schedule equal to a constant gives the constant's result, and a
    # hand-made chain equals the named optimizer with normalize_by.
    sgd_l2 = opt.optimize(m, setup, p, key=key, steps=3,
                          optimizer=opt.make_optimizer("sgd", "l2"))
    sched = opt.optimize(m, setup._replace(learning_rate=optax.constant_schedule(0.01)),
                         p, key=key, steps=3, optimizer=opt.make_optimizer("sgd", "l2"))
    np.testing.assert_allclose(sched.images, sgd_l2.images, atol=1e-7)
    chain = optax.chain(opt.normalize_by("l2"), optax.sgd(0.01))
    np.testing.assert_allclose(opt.optimize(m, setup, p, key=key, steps=3,
                                            optimizer=chain).images,
                               sgd_l2.images, atol=1e-6)
    # Every step moves each image by 0.01 in L2 (before the clip to [0, 1]).
    step = jnp.sqrt(jnp.sum(jnp.square(sgd_l2.images - p.init(jax.random.split(key)[0])),
                            axis=(1, 2, 3)))
    self.assertTrue(np.all(np.asarray(step) <= 0.03 + 1e-5))

  def test_keep_best(self):
    m = tiny_model()
    t = jnp.array([3, 1])
    setup = opt.Setup(O.class_logit(t) - 5.0 * O.tv(), learning_rate=0.3)
    kw = dict(key=jax.random.PRNGKey(0), steps=8, optimizer="sign",
              init=smooth_images(2, HW))
    p = P.pixels(2, HW)
    last = opt.optimize(m, setup, p, **kw)
    best = opt.optimize(m, setup, p, keep_best=True, **kw)
    score = lambda r: np.asarray(opt.objective_values(m, O.resolve(setup.objective, m, HW),
                                                      r.images))
    # Steps too large to settle: the best iterate is the maximum over the
    # history and the last iterate, and beats the last one here.
    h = np.asarray(last.history["objective"])
    np.testing.assert_allclose(score(best), np.maximum(h.max(0), score(last)), rtol=1e-5)
    self.assertTrue(np.any(score(best) > score(last) + 1e-4))

  def test_lbfgs_lowers_the_loss(self):
    m = tiny_model()
    target = smooth_images(1, HW, seed=3)
    _, acts = m.apply(m.params, target, taps=("relu2_1",), logits=False)
    setup = opt.Setup(O.feature_match("relu2_1", acts["relu2_1"]))
    # A rolled scan of 3 steps: the line search's loop compiles once.
    res = opt.optimize(m, setup, P.fft(1, HW), key=jax.random.PRNGKey(0), steps=6,
                       optimizer="lbfgs", chunk=3, unroll=1)
    h = np.asarray(res.history["objective"])[:, 0]
    # The zoom line search accepts only decreasing steps (the fft image has no
    # clip to break them): the loss falls at every step, by far overall.
    self.assertTrue(np.all(np.diff(h) >= -1e-6), msg=str(h))
    self.assertLess(-h[-1], 0.5 * -h[0])  # measured: 0.86 -> 0.36 in 5 updates

  def test_sweep_equals_one_by_one(self):
    m = tiny_model()
    p = P.pixels(2, HW)
    target = jnp.array([2, 5])
    setups, keys = [], jax.random.split(jax.random.PRNGKey(0), 3)
    for l2, sigma, lr in ((0.1, 0.4, 0.05), (0.5, 0.8, 0.02), (0.0, 1.0, 0.1)):
      setups.append(opt.Setup(O.class_logit(target) - l2 * O.l2(), T.jitter(2),
                              T.gaussian_blur(sigma, every=2, radius=3), lr))
    swept = sweep_engine.sweep(m, setups, p, keys=keys, steps=6)
    self.assertEqual(swept.images.shape, (3, 2, 16, 16, 3))
    for i, s in enumerate(setups):
      one = opt.optimize(m, s, p, key=keys[i], steps=6)
      np.testing.assert_allclose(swept.images[i], one.images, atol=2e-5)
      np.testing.assert_allclose(swept.history["objective"][i],
                                 one.history["objective"], rtol=1e-4, atol=1e-4)

  def test_long_run_chunks_and_progress(self):
    m = tiny_model()
    done = []
    res = S.visualize(m, O.class_logit(jnp.arange(3)), 3, key=jax.random.PRNGKey(0),
                      steps=300, size=HW, recipe_name="yosinski")
    self.assertTrue(np.all(np.isfinite(res.images)))
    self.assertTrue(np.all(np.isfinite(res.history["objective"])))
    self.assertEqual(res.history["objective"].shape, (300, 3))
    with self.assertLogs(level="INFO") as logs:
      r2 = opt.optimize(m, opt.Setup(O.channel("relu2_1", jnp.arange(2))), P.fft(2, HW),
                        key=jax.random.PRNGKey(1), steps=250, chunk=50, unroll=1,
                        progress=lambda n, h: done.append((n, h["objective"].shape)))
      with mock.patch.object(opt, "LOG_EVERY_S", 0.0):  # log every chunk
        opt.optimize(m, opt.Setup(O.channel("relu2_1", 0)), P.fft(1, HW),
                     key=jax.random.PRNGKey(1), steps=4, chunk=2)
    self.assertTrue(np.all(np.isfinite(r2.images)))
    self.assertEqual(done, [(n, (50, 2)) for n in range(50, 251, 50)])
    self.assertRegex(logs.output[-1], r"step 4/4, objective .*, about 0 s left")


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

  def test_invert_speaks_the_recipe(self):
    m = tiny_model()
    x = smooth_images(1, HW)
    kw = dict(key=jax.random.PRNGKey(0), steps=3)
    res = S.invert_result(m, x, "relu1_1", tv=0.1, tv_beta=1.5, learning_rate=0.02, **kw)
    self.assertEqual(res.history["objective"].shape, (3, 1))
    np.testing.assert_array_equal(
        S.invert(m, x, "relu1_1", tv=0.1, tv_beta=1.5, learning_rate=0.02, **kw),
        res.images)
    setup, _ = S.inversion_setup(m, x, "relu1_1", tv=0.1, tv_beta=1.5)
    self.assertEqual([t.kind for t in setup.objective.terms], ["feature_match", "tv"])

  def test_deepdream(self):
    m = cifar_model()
    img = smooth_images(1, (40, 52), seed=2)[0]
    out = S.deepdream(m, img, "relu3_1", key=jax.random.PRNGKey(0), octaves=2,
                      steps=5, learning_rate=0.01, roll=2)
    self.assertEqual(out.shape, img.shape)
    self.assertTrue(np.all((out >= 0) & (out <= 1)))

    def norm(x):
      return float(jnp.linalg.norm(m(x[None], taps=("relu3_1",), logits=False)[1]["relu3_1"]))
    self.assertGreater(norm(out), 1.2 * norm(img))

  def test_cluster_and_multifaceted(self):
    pts = jnp.concatenate([jnp.zeros((5, 2)), jnp.ones((5, 2)) * 10]) + 0.01 * jnp.arange(10)[:, None]
    a = S.cluster_images(pts, 2, key=jax.random.PRNGKey(0))
    self.assertEqual(len(set(a[:5].tolist())), 1)
    self.assertEqual(len(set(a[5:].tolist())), 1)
    self.assertNotEqual(int(a[0]), int(a[9]))
    m = tiny_model()
    x = smooth_images(6, HW)
    res = S.multifaceted(m, x, 3, k=2, key=jax.random.PRNGKey(0), steps=5,
                         layer="fc6")
    facets, means, assign = res.images, res.means, res.assignment
    self.assertEqual(facets.shape, (2, 16, 16, 3))
    self.assertEqual(assign.shape, (6,))
    # Each start is its cluster's mean image.
    for c in range(2):
      np.testing.assert_allclose(means[c], x[np.asarray(assign) == c].mean(0), atol=1e-6)


if __name__ == "__main__":
  absltest.main()
