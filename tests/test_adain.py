"""Tests of AdaIN (Huang & Belongie 2017; issue 12's "beyond the lecture"):
the re-normalization, the mirrored decoder, `adain_stylize` (sizes, alpha,
blending, errors), training on the shared resumable loop, the launcher and
the shipped decoder on a style it never trained on."""

import os

from absl.testing import absltest
import chex
import jax
import jax.numpy as jnp
import numpy as np

from conftest import SHARED_IMAGES, tiny_model, tmpdir
from cnnviz_jax import data, image, models, style
from cnnviz_jax.data import samples


def images(n, hw, seed=0):
  x = np.random.default_rng(seed).uniform(0, 1, (n, *hw, 3)).astype(np.float32)
  return jnp.asarray(image.blur(jnp.asarray(x), 1.0, 3).clip(0, 1))


def stripes(hw=(40, 40)):
  """A synthetic style no network here was trained on: blue/yellow stripes."""
  cols = (np.arange(hw[1]) // 4) % 2
  band = np.broadcast_to(cols, hw).astype(np.float32)
  return np.stack([band, band * 0.8 + 0.1, 1 - band], -1)


def cifar_style(i=0, side=96):
  """Image `i` of the bundled CIFAR-10 test sample, upsampled to `side`: a
  natural style the shipped decoder never saw (it trained on the train
  split)."""
  x = jnp.asarray(data.load_sample()[0][i:i + 1], jnp.float32) / 255.0
  return np.asarray(jnp.clip(image.resize(x, (side, side), "linear"), 0, 1)[0])


def tiny_net(seed=0):
  """The tiny encoder with a random decoder at relu2_1."""
  model = tiny_model()
  decoder = style.Decoder(style.decoder_plan(model, "relu2_1"))
  sizes = style.stage_sizes(model, "relu2_1", (16, 16))
  params = jax.jit(lambda k: decoder.init(k, jnp.zeros((1, 4, 4, 16)), sizes))(
      jax.random.PRNGKey(seed))["params"]
  return style.AdaIN(model, "relu2_1", decoder, params, {})


class AdaINTest(chex.TestCase):

  def test_adain_gives_the_style_moments(self):
    rng = np.random.default_rng(0)
    c = jnp.asarray(rng.standard_normal((2, 5, 7, 6)) * 3 + 1, jnp.float32)
    s = jnp.asarray(rng.standard_normal((2, 4, 3, 6)) * 0.5 - 2, jnp.float32)
    mean, std = style.moments(s)
    np.testing.assert_allclose(mean[:, 0, 0], np.asarray(s).mean((1, 2)), atol=1e-5)
    np.testing.assert_allclose(std[:, 0, 0], np.sqrt(np.asarray(s).var((1, 2)) + 1e-5),
                               rtol=1e-5)
    out = style.adain(c, mean, std)
    got_mean, got_std = style.moments(out)
    np.testing.assert_allclose(got_mean, mean, atol=1e-4)
    np.testing.assert_allclose(got_std, std, rtol=1e-3)

  def test_decoder_mirrors_the_encoder(self):
    # cifar_vgg up to relu3_1: conv1_1 | conv2_1 conv2_2 | conv3_1, mirrored
    # deepest first, one extra conv where a stage had one.
    cifar = models.load("cifar_vgg")
    self.assertEqual(style.decoder_plan(cifar, "relu3_1"), ((128,), (128, 64), (64, 3)))
    self.assertEqual(style.decoder_plan(tiny_model(), "relu2_1"), ((8,), (8, 3)))
    # Odd sizes: the encoder's own map sizes, back to the image's.
    self.assertEqual(style.stage_sizes(cifar, "relu3_1", (37, 45)), ((18, 22), (37, 45)))
    with self.assertRaisesRegex(ValueError, "not spatial"):
      style.decoder_plan(cifar, "fc6")
    with self.assertRaisesRegex(ValueError, "relu2_1"):  # lists valid names
      style.decoder_plan(cifar, "relu9_9")

  def test_stylize_sizes_alpha_and_blending(self):
    net = tiny_net()
    a, b = stripes(), np.asarray(images(1, (24, 20), seed=3)[0])
    for hw in ((16, 16), (17, 23)):
      x = images(2, hw)
      out = style.adain_stylize(net, x, [a])
      self.assertEqual(out.shape, x.shape)
      self.assertTrue(0.0 <= float(out.min()) and float(out.max()) <= 1.0)
    x = images(2, (17, 23))
    # alpha = 0: the content's own features, whatever the style.
    np.testing.assert_allclose(style.adain_stylize(net, x, [a], alpha=0.0),
                               style.adain_stylize(net, x, [b], alpha=0.0), atol=1e-6)
    self.assertGreater(float(jnp.abs(style.adain_stylize(net, x, [a]) -
                                     style.adain_stylize(net, x, [b])).max()), 1e-3)
    # A one-hot blend is that style; a blend mixes the moments linearly.
    np.testing.assert_allclose(style.adain_stylize(net, x, [a, b], weights=[1, 0]),
                               style.adain_stylize(net, x, [a]), atol=1e-6)
    ma, sa = style.style_moments(net, [a])
    mb, sb = style.style_moments(net, [b])
    m, s = style.style_moments(net, [a, b], weights=[0.25, 0.75])
    np.testing.assert_allclose(m, 0.25 * ma + 0.75 * mb, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s, 0.25 * sa + 0.75 * sb, rtol=1e-5, atol=1e-6)
    # One image and a batch of it agree.
    np.testing.assert_allclose(style.adain_stylize(net, x[0], [a]),
                               style.adain_stylize(net, x, [a])[0], atol=1e-5)

  def test_bad_arguments_name_the_problem(self):
    net = tiny_net()
    x, a = images(1, (16, 16)), stripes()
    for kwargs, message in (({"alpha": 1.5}, "alpha must be in"),
                            ({"weights": [0.5, 0.6]}, "sum to 1"),
                            ({"weights": [1.0]}, "shape")):
      with self.assertRaisesRegex(ValueError, message):
        style.adain_stylize(net, x, [a, a], **kwargs)
    with self.assertRaisesRegex(ValueError, "empty"):
      style.adain_stylize(net, x, [])
    with self.assertRaisesRegex(ValueError, "at least"):
      style.adain_stylize(net, x, [a[:2, :2]])
    with self.assertRaisesRegex(ValueError, "3 RGB channels"):
      style.adain_stylize(net, x[..., :2], [a])

  def test_file_round_trip_and_errors(self):
    net = tiny_net()
    path = os.path.join(tmpdir(self), "d.safetensors")
    style.save_adain(path, net, recipe={"steps": 1})
    back = style.load_adain(path, tiny_model())
    chex.assert_trees_all_equal(back.params, net.params)
    self.assertEqual((back.layer, back.info["encoder"]), ("relu2_1", "tiny"))
    with self.assertRaisesRegex(ValueError, "decodes tiny features"):
      style.load_adain(path, models.load("cifar_vgg"))
    models.checkpoint.save(path, net.params, {"format": "something else"})
    with self.assertRaisesRegex(ValueError, "not an AdaIN decoder file"):
      style.load_adain(path, tiny_model())
    with self.assertRaises(FileNotFoundError):
      style.load_adain(path + ".absent")


def tiny_pools(crop=16):
  photo = samples.bundled_photos(max_side=64).get("china", samples.synthetic_pattern(64))
  cifar = np.zeros((4, 32, 32, 3), np.uint8) + 100
  content = style.content_pool([photo], cifar, crop, (32, 48))
  styles = style.content_pool([stripes((48, 48)), np.asarray(images(1, (48, 48), 5)[0])],
                              None, crop, (32, 48))
  return content, styles


class TrainTest(absltest.TestCase):

  def test_loss_falls_and_a_resumed_run_equals_an_uninterrupted_one(self):
    model = tiny_model()
    content, styles = tiny_pools()
    recipe = style.AdaINRecipe(encoder="tiny", layer="relu2_1",
                               style_layers=("relu1_1", "relu2_1"), crop=16,
                               batch=2, steps=30, learning_rate=1e-2,
                               style_cifar_fraction=0.0)
    quiet = lambda e: None
    # One step per call: the compile of a longer unrolled chunk is tested
    # with the stylizer (test_fast_style); the loop is the same.
    one = dict(log_every=5, checkpoint_every=10, steps_per_call=1, progress=quiet)
    full = style.train_adain(recipe, model, content, styles, tmpdir(self), **one)
    h = full["history"]
    self.assertEqual([e["step"] for e in h], [5, 10, 15, 20, 25, 30])
    self.assertLess(h[-1]["loss"], 0.6 * h[0]["loss"])
    # 12 steps, then the rest in a second sitting.
    work = tmpdir(self)
    part = style.train_adain(recipe, model, content, styles, work,
                             steps_per_run=12, **one)
    self.assertEqual((part["step"], part["done"]), (12, False))
    self.assertEqual([e["step"] for e in part["history"]], [5, 10, 12])
    rest = style.train_adain(recipe, model, content, styles, work, **one)
    self.assertTrue(rest["done"])
    chex.assert_trees_all_equal(rest["params"], full["params"])  # bit for bit
    net = style.load_adain(os.path.join(work, style.ADAIN_EXPORT), model)
    chex.assert_trees_all_equal(net.params, full["params"])
    import dataclasses
    with self.assertRaisesRegex(ValueError, "style_weight"):
      style.train_adain(dataclasses.replace(recipe, style_weight=1.0), model,
                        content, styles, work, progress=quiet)

  def test_bad_recipes_name_the_field(self):
    import dataclasses
    model = tiny_model()
    content, styles = tiny_pools()
    ok = style.AdaINRecipe(encoder="tiny", layer="relu2_1",
                           style_layers=("relu1_1",), crop=16, scales=(32,),
                           style_scales=(32,))
    for change, message in (({"encoder": "cifar_vgg"}, "recipe.encoder"),
                            ({"learning_rate": 0.0}, "learning_rate"),
                            ({"style_weight": -1.0}, "style_weight"),
                            ({"style_cifar_fraction": 1.5}, "style_cifar_fraction"),
                            ({"style_scales": (8,)}, "style_scales"),
                            ({"crop": 2}, "minimum"),
                            ({"style_layers": ("relu7",)}, "relu1_1")):
      with self.assertRaisesRegex(ValueError, message):
        style.train_adain(dataclasses.replace(ok, **change), model, content,
                          styles, tmpdir(self))

  def test_launcher_smoke_run(self):
    from experiments import train_adain
    from experiments.configs.train_adain import get_config
    config = get_config("smoke")
    work = tmpdir(self)
    metrics = train_adain.run(config, work)
    self.assertTrue(metrics["done"])
    for f in ("adain_decoder.safetensors", "checkpoint.msgpack", "history.json",
              "preview.png", "metrics.json", "config.json"):
      self.assertTrue(os.path.exists(os.path.join(work, f)), f)
    config.style_layers = "relu1_1,nope"
    with self.assertRaisesRegex(ValueError, "config.style_layers"):
      train_adain.run(config, work)


def moment_error(model, layers, x, style_image):
  """Mean over layers of |mean_x - mean_s|^2 + |std_x - std_s|^2 relative
  to the style's, at the encoder's style layers."""
  a = models.predict.activations(model, x, layers)  # jitted
  b = models.predict.activations(model, style_image, layers)
  errs = []
  for l in layers:
    (ma, sa), (mb, sb) = style.moments(a[l]), style.moments(b[l])
    errs.append(float((jnp.sum((ma - mb) ** 2) + jnp.sum((sa - sb) ** 2)) /
                      (jnp.sum(mb ** 2) + jnp.sum(sb ** 2))))
  return float(np.mean(errs))


class ShippedTest(absltest.TestCase):

  def test_shipped_decoder_moves_towards_unseen_styles(self):
    net = style.load_adain()
    recipe = net.info["recipe"]
    self.assertEqual((net.model.name, net.layer), ("cifar_vgg", "relu3_1"))
    layers = tuple(recipe["style_layers"])
    content = jnp.asarray(samples.bundled_photos(max_side=128)["china"])[None]
    # Never trained on: CIFAR-10 test images; the held-out painting if present.
    unseen = {"cifar test 0": cifar_style(0)}
    held_out = os.path.join(SHARED_IMAGES, "shipwreck.jpg")
    if os.path.exists(held_out):
      unseen["shipwreck (held out)"] = data.load_image(held_out, max_side=256)
    for name, s in unseen.items():
      s = jnp.asarray(s)[None]
      out = style.adain_stylize(net, content, s[0])
      self.assertEqual(out.shape, content.shape)
      before = moment_error(net.model, layers, content, s)
      after = moment_error(net.model, layers, out, s)
      self.assertLess(after, 0.5 * before, name)
      # Half the style lies between the content and the full style.
      half = moment_error(net.model, layers,
                          style.adain_stylize(net, content, s[0], alpha=0.5), s)
      self.assertLess(after, half, name)


if __name__ == "__main__":
  absltest.main()
