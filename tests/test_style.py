"""Tests of texture and style (issue 11): Gram matrices, the style and
content terms, neural texture and style transfer on the engine, the
Efros-Leung baseline. Small images and the tiny model keep the file fast."""

import os
import shutil

from absl.testing import absltest, parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np

from conftest import SHARED_IMAGES, tiny_model
from cnnviz_jax import image, models, style
from cnnviz_jax import objectives as O
from cnnviz_jax.synthesis import engine

KEY = jax.random.PRNGKey(0)
HW = (16, 16)


def smooth(hw, seed=0):
  """A spatially correlated colour image `[1, H, W, 3]` in [0, 1]."""
  x = np.random.default_rng(seed).uniform(0, 1, (1, *hw, 3)).astype(np.float32)
  x = image.blur(jnp.asarray(x), 1.5, 4)
  return (x - x.min()) / (x.max() - x.min())


def stripes(hw, period=4):
  """Red/blue vertical stripes `[1, H, W, 3]`: a texture with structure."""
  cols = (np.arange(hw[1]) // (period // 2)) % 2
  img = np.zeros((1, *hw, 3), np.float32)
  img[..., 0] = cols
  img[..., 2] = 1 - cols
  img[..., 1] = 0.3
  return jnp.asarray(img)


class GramTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_explicit_formula(self):
    f = jax.random.normal(KEY, (2, 5, 3, 4))
    got = self.variant(style.gram_matrix)(f)
    for n in range(2):
      flat = np.asarray(f[n]).reshape(-1, 4)
      np.testing.assert_allclose(got[n], flat.T @ flat / 15, rtol=1e-5, atol=1e-6)

  def test_spatial_permutation_invariant(self):
    f = jax.random.normal(KEY, (1, 6, 7, 5))
    perm = np.random.default_rng(0).permutation(42)
    shuffled = f.reshape(1, 42, 5)[:, perm].reshape(1, 6, 7, 5)
    np.testing.assert_allclose(style.gram_matrix(shuffled), style.gram_matrix(f),
                               rtol=1e-5, atol=1e-6)
    self.assertFalse(np.allclose(shuffled, f))

  def test_rank_checked(self):
    with self.assertRaisesRegex(ValueError, r"\[N, H, W, C\]"):
      style.gram_matrix(jnp.ones((3, 4, 5)))

  def test_term_is_zero_at_target_and_checked(self):
    m = tiny_model()
    x = smooth(HW)
    _, acts = m.apply(m.params, x, taps=("relu2_1",), logits=False)
    obj = O.resolve(style.gram_loss("relu2_1", style.gram_matrix(acts["relu2_1"])),
                    m, HW)
    self.assertAlmostEqual(float(engine.objective_values(m, obj, x)[0]), 0.0, places=6)
    self.assertLess(float(engine.objective_values(m, obj, smooth(HW, 1))[0]), -1e-3)
    with self.assertRaisesRegex(ValueError, "16, 16"):
      O.resolve(style.gram_loss("relu2_1", jnp.ones((8, 8))), m, HW)


class ImagesTest(absltest.TestCase):

  def test_grayscale_and_rgba_converted(self):
    gray = np.full((20, 20), 128, np.uint8)
    np.testing.assert_allclose(style.to_rgb(gray), np.full((1, 20, 20, 3), 128 / 255))
    rgba = np.zeros((20, 20, 4), np.float32)
    rgba[..., 0], rgba[..., 3] = 1.0, 0.5  # half-transparent red over white
    np.testing.assert_allclose(style.to_rgb(rgba)[0, 0, 0], [1.0, 0.5, 0.5])
    with self.assertRaisesRegex(ValueError, "one image"):
      style.to_rgb(np.zeros((2, 8, 8, 3), np.float32))

  def test_colour_preservation(self):
    content, out = smooth(HW, 0), smooth(HW, 1)
    kept = style.luminance_transfer(out, content)
    yiq = lambda x: np.asarray(x).reshape(-1, 3) @ style._images._RGB_TO_YIQ.T
    inside = np.all((np.asarray(kept) > 1e-4) & (np.asarray(kept) < 1 - 1e-4), -1).ravel()
    # Luminance from the output, chroma from the content (unclipped pixels).
    np.testing.assert_allclose(yiq(kept)[inside, 0], yiq(out)[inside, 0], atol=1e-4)
    np.testing.assert_allclose(yiq(kept)[inside, 1:], yiq(content)[inside, 1:], atol=1e-4)
    matched = style.match_histograms(smooth((8, 12), 2), content)
    np.testing.assert_allclose(np.sort(np.asarray(matched).reshape(-1, 3), 0)[[0, -1]],
                               np.sort(np.asarray(content).reshape(-1, 3), 0)[[0, -1]],
                               atol=0.05)


class NonparametricTest(absltest.TestCase):

  def test_every_pixel_from_example(self):
    ex = np.asarray(smooth((14, 14), 3)[0])
    out, src = style.texture_nonparametric(ex, (10, 12), key=KEY, window=5,
                                           return_sources=True)
    self.assertEqual(out.shape, (10, 12, 3))
    np.testing.assert_array_equal(out, ex[src[..., 0], src[..., 1]])

  def test_checkerboard_reproduced_exactly(self):
    s = 3
    yy, xx = np.mgrid[:24, :24]
    board = ((yy // s + xx // s) % 2).astype(np.float32)
    out = np.asarray(style.texture_nonparametric(
        np.stack([board, 1 - board, 0.5 * board], -1), (20, 26), key=KEY, window=7))
    r, c = np.arange(20)[:, None], np.arange(26)[None]
    shifts = [((r + dy) // s + (c + dx) // s) % 2
              for dy in range(2 * s) for dx in range(2 * s)]
    self.assertTrue(any(np.array_equal(out[..., 0], b) for b in shifts))

  def test_scan_line_causality(self):
    offs = style.causal_offsets(5)
    self.assertTrue(np.all((offs[:, 0] < 0) | ((offs[:, 0] == 0) & (offs[:, 1] < 0))))
    self.assertEqual(len(offs), 2 * 5 + 2)
    # Rows below never influence rows above: a taller output with the same
    # key starts with the same rows, pixel for pixel.
    ex = np.asarray(smooth((12, 12), 4)[0])
    short = style.texture_nonparametric(ex, (6, 9), key=KEY, window=5)
    tall = style.texture_nonparametric(ex, (11, 9), key=KEY, window=5)
    np.testing.assert_array_equal(tall[:6], short)

  def test_bad_window(self):
    with self.assertRaisesRegex(ValueError, "odd"):
      style.texture_nonparametric(np.zeros((9, 9, 3), np.float32), (4, 4), key=KEY,
                                  window=4)
    with self.assertRaisesRegex(ValueError, "at least window"):
      style.texture_nonparametric(np.zeros((5, 9, 3), np.float32), (4, 4), key=KEY,
                                  window=7)


class TextureTransferTest(parameterized.TestCase):

  def test_texture_lowers_style_loss_95_percent(self):
    m = tiny_model()
    out, _, prob = style.texture(m, stripes((16, 16)), (20, 20), key=KEY, steps=100,
                                 learning_rate=0.05, return_result=True)
    start = float(style.losses(m, prob, prob.init)["style"][0])
    end = float(style.losses(m, prob, out)["style"][0])
    self.assertEqual(out.shape, (1, 20, 20, 3))
    self.assertLessEqual(end, 0.05 * start, (start, end))

  @parameterized.parameters("adam", "lbfgs")
  def test_transfer_lowers_both_losses(self, optimizer):
    m = tiny_model()
    content, painting = smooth((16, 20), 5), stripes((12, 12))
    out, _, prob = style.transfer(
        m, content, [painting], key=KEY, steps=30, optimizer=optimizer,
        init="noise", style_weight=4.0, tv_weight=0.0, learning_rate=0.05,
        return_result=True)
    start, end = style.losses(m, prob, prob.init), style.losses(m, prob, out)
    self.assertEqual(out.shape, content.shape)
    self.assertTrue(0.0 <= float(out.min()) and float(out.max()) <= 1.0)
    for k in ("style", "content"):
      self.assertLess(float(end[k][0]), 0.6 * float(start[k][0]), (k, start, end))

  def test_blend_one_zero_equals_first(self):
    m = tiny_model()
    content, a, b = smooth(HW, 6), stripes((12, 12)), smooth((20, 20), 7)
    kw = dict(key=KEY, steps=3, init="content")
    np.testing.assert_array_equal(
        style.transfer(m, content, [a, b], style_weights=(1.0, 0.0), **kw),
        style.transfer(m, content, [a], **kw))

  def test_sweep_point_equals_single_run(self):
    m = tiny_model()
    content, painting = smooth(HW, 8), stripes((12, 12))
    points = [dict(style_weight=s, tv_weight=t) for s in (1.0, 10.0) for t in (0.0, 1.0)]
    res = style.transfer_sweep(m, content, [painting], points, key=KEY, steps=5)
    self.assertEqual(res.images.shape, (4, 1, *HW, 3))
    one = style.transfer(m, content, [painting], key=jax.random.fold_in(KEY, 3),
                         steps=5, style_weight=10.0, tv_weight=1.0)
    np.testing.assert_allclose(res.images[3], one, atol=2e-4)

  def test_bad_input(self):
    m = tiny_model()
    content = smooth(HW)
    with self.assertRaisesRegex(ValueError, "styles is empty"):
      style.transfer(m, content, [], key=KEY, steps=1)
    with self.assertRaisesRegex(ValueError, "below the network's minimum"):
      style.transfer(m, content, [np.zeros((2, 2, 3), np.float32)], key=KEY, steps=1,
                     style_scale=0.1)
    with self.assertRaisesRegex(ValueError, "positive sum"):
      style.transfer(m, content, [content], style_weights=[0.0], key=KEY, steps=1)
    with self.assertRaisesRegex(ValueError, "all 0"):
      style.transfer(m, content, [content], key=KEY, steps=1, style_weight=0.0,
                     content_weight=0.0)
    with self.assertRaisesRegex(ValueError, "optimizer"):
      style.transfer(m, content, [content], key=KEY, steps=1, optimizer="newton")

  def test_grayscale_and_rgba_styles_accepted(self):
    m = tiny_model()
    gray = np.asarray(smooth((12, 12))[0, ..., 0])
    rgba = np.concatenate([np.asarray(stripes((12, 12))[0]),
                           np.ones((12, 12, 1), np.float32)], -1)
    out = style.transfer(m, smooth(HW), [gray, rgba], key=KEY, steps=2)
    self.assertEqual(out.shape, (1, *HW, 3))

  def test_dream_term_and_defaults(self):
    m = tiny_model()
    prob = style.transfer_problem(m, smooth(HW), [stripes((12, 12))], key=KEY,
                                  dream_layer="relu1_1", dream_weight=0.5)
    kinds = [t.kind for t in prob.setup.objective.terms]
    self.assertEqual(kinds, ["gram_match", "gram_match", "feature_match", "tv",
                             "layer_l2"])
    self.assertEqual(style.default_layers(m), (("relu1_1", "relu2_1"), "relu2_1"))
    for name in ("vgg16", "vgg19"):
      self.assertEqual(style.default_layers(models.build(name, None)),
                       (style.GATYS_STYLE, "relu4_2"))

  def test_multiscale_memory_bound(self):
    m = tiny_model()
    self.assertEqual(style.pyramid((64, 48), 16, 4), [(16, 12), (32, 24), (64, 48)])
    small = style.memory_estimate(m, (32, 32), ["relu2_1"])
    self.assertAlmostEqual(style.memory_estimate(m, (64, 64), ["relu2_1"]) / small, 4, 1)
    with self.assertRaisesRegex(ValueError, "memory_limit"):
      style.transfer_multiscale(m, smooth((32, 32)), [stripes((12, 12))], key=KEY,
                                memory_limit=small / 2)
    out = style.transfer_multiscale(m, smooth((32, 32)), [stripes((12, 12))], key=KEY,
                                    steps=2, start_side=16)
    self.assertEqual(out.shape, (1, 32, 32, 3))


@absltest.skipUnless(os.path.isdir(SHARED_IMAGES), f"no {SHARED_IMAGES}")
class PaintingTest(absltest.TestCase):

  def test_painting_style_on_photo_runs(self):
    from cnnviz_jax import data
    m = tiny_model()
    painting = data.load_image(os.path.join(SHARED_IMAGES, "starry_night.jpg"),
                               max_side=32)
    photo = data.load_image(os.path.join(SHARED_IMAGES, "tubingen.jpg"), max_side=24)
    out = style.transfer(m, photo, [painting], key=KEY, steps=4)
    self.assertEqual(out.shape[1:3], photo.shape[:2])



class LauncherTest(parameterized.TestCase):
  """Each style launcher's `run` end to end on its smoke config."""

  @parameterized.parameters("texture_nonparametric", "texture", "style_transfer")
  def test_smoke(self, name):
    import importlib
    import json
    import tempfile
    config = importlib.import_module(f"experiments.configs.{name}").get_config("smoke")
    workdir = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, workdir, ignore_errors=True)
    metrics = importlib.import_module(f"experiments.{name}").run(config, workdir)
    self.assertEqual(json.load(open(os.path.join(workdir, "metrics.json"))), metrics)
    self.assertTrue(os.path.exists(os.path.join(workdir, "config.json")))
    if name == "texture":
      self.assertLess(metrics["style_loss_end"], metrics["style_loss_start"])
    if name == "style_transfer":
      self.assertEqual(len(metrics["sweep_final_objective"]), 4)


if __name__ == "__main__":
  absltest.main()
