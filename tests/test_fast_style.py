"""Tests of the feed-forward stylizer (issue 12): Johnson et al.'s network
with conditional instance norm, `stylize`, checkpoints, training (the loss
falls; killed and resumed equals uninterrupted), the launcher and the
shipped network. A narrow network, 16-32 px images and the tiny loss network
keep the file fast."""

import os

from absl.testing import absltest, parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np

from conftest import SHARED_IMAGES, tiny_model, tmpdir
from cnnviz_jax import data, image, models, style
from cnnviz_jax.data import samples
from cnnviz_jax.style import _stylizer, _transfer

KEY = jax.random.PRNGKey(0)
NARROW = dict(channels=(4, 8, 8), num_residual=1)


def narrow(num_styles=3):
  """A narrow stylizer with random parameters whose norm layers differ per
  style (random scale/bias), so style paths are distinguishable."""
  net = style.Stylizer(num_styles=num_styles, **NARROW)
  params = net.init_params(KEY)
  flat = models.core.flatten(params)
  rng = np.random.default_rng(1)
  for k in flat:
    if k.endswith("norm/scale"):
      flat[k] = jnp.asarray(1 + 0.5 * rng.standard_normal(flat[k].shape), jnp.float32)
    elif k.endswith("norm/bias"):
      flat[k] = jnp.asarray(0.5 * rng.standard_normal(flat[k].shape), jnp.float32)
  return net, models.core.unflatten(flat)


def images(n, hw, seed=0):
  x = np.random.default_rng(seed).uniform(0, 1, (n, *hw, 3)).astype(np.float32)
  return jnp.asarray(image.blur(jnp.asarray(x), 1.0, 3).clip(0, 1))


def single_style(net, params, w):
  """A one-style network whose norm parameters are `w @ scale`, `w @ bias`
  of `net`'s: what blending is defined to be."""
  one = style.Stylizer(num_styles=1, channels=net.channels,
                       num_residual=net.num_residual)
  w = jnp.asarray(w, jnp.float32)
  flat = {k: (w @ v)[None] if k.endswith(("norm/scale", "norm/bias")) else v
          for k, v in models.core.flatten(params).items()}
  return one, models.core.unflatten(flat)


class StylizerTest(chex.TestCase, parameterized.TestCase):

  @parameterized.parameters((33, 47), (7, 9), (16, 21))
  def test_size_and_range(self, h, w):
    net, params = narrow()
    x = images(2, (h, w))
    out = style.stylize(net, params, x, style=1)
    self.assertEqual(out.shape, (2, h, w, 3))
    self.assertGreaterEqual(float(out.min()), 0.0)
    self.assertLessEqual(float(out.max()), 1.0)
    self.assertGreater(float(out.std()), 1e-3)  # not a constant image
    one = style.stylize(net, params, x[0], style=1)
    self.assertEqual(one.shape, (h, w, 3))

  @parameterized.parameters((5, 7), (130, 129))  # small and large, odd sizes
  def test_fused_upsample_conv_equals_resize_then_conv(self, h, w):
    x = jax.random.normal(jax.random.PRNGKey(0), (2, h, w, 4))
    k = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 4, 5))
    up = image.resize(x, (2 * h, 2 * w), "nearest")
    up = jnp.pad(up, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    want = jax.lax.conv_general_dilated(up, k, (1, 1), "VALID",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    got = _stylizer._upsample2_conv(x, k)
    np.testing.assert_allclose(got, want, atol=2e-5 * float(jnp.abs(want).max()))
    # And its gradients (training runs through them).
    g = jax.random.normal(jax.random.PRNGKey(2), want.shape)

    def grads(f):
      return jax.grad(lambda x, k: jnp.sum(f(x, k) * g), argnums=(0, 1))(x, k)

    reference = lambda x, k: jax.lax.conv_general_dilated(
        jnp.pad(image.resize(x, (2 * h, 2 * w), "nearest"),
                ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect"),
        k, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    for a, b in zip(grads(_stylizer._upsample2_conv), grads(reference)):
      np.testing.assert_allclose(a, b, atol=2e-5 * float(jnp.abs(b).max()))

  @chex.variants(with_jit=True, without_jit=True)
  def test_batch_equals_one_by_one(self):
    net, params = narrow()
    x = images(3, (15, 18))
    w = jax.nn.one_hot(jnp.array([0, 2, 1]), 3)
    apply = self.variant(lambda p, x, w: net.apply({"params": p}, x, w))
    batch = apply(params, x, w)
    per = jax.vmap(lambda xi, wi: net.apply({"params": params}, xi[None], wi[None])[0])(x, w)
    for i in range(3):
      alone = net.apply({"params": params}, x[i:i + 1], w[i:i + 1])[0]
      np.testing.assert_allclose(batch[i], alone, atol=1e-5)
      np.testing.assert_allclose(per[i], alone, atol=1e-5)
    # stylize with per-image rows is the same computation.
    np.testing.assert_allclose(style.stylize(net, params, x, style=w), batch, atol=1e-5)

  def test_instance_norm_statistics(self):
    x = 3.0 + 2.0 * jax.random.normal(KEY, (2, 9, 11, 5))
    y = style.instance_norm(x)
    np.testing.assert_allclose(y.mean(axis=(1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.var(axis=(1, 2)), 1.0, atol=1e-3)
    # The conditional layer is that normalization, then gamma x + beta.
    norm = style.CondInstanceNorm(3)
    p = {"params": {"scale": jax.random.normal(KEY, (3, 5)),
                    "bias": jax.random.normal(jax.random.PRNGKey(1), (3, 5))}}
    w = jnp.array([[0.0, 1.0, 0.0], [0.2, 0.3, 0.5]])
    out = norm.apply(p, x, w)
    gamma, beta = w @ p["params"]["scale"], w @ p["params"]["bias"]
    pre = (out - beta[:, None, None]) / gamma[:, None, None]
    np.testing.assert_allclose(pre.mean(axis=(1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(pre.var(axis=(1, 2)), 1.0, atol=1e-3)

  def test_one_hot_is_own_path_and_blend_is_linear_in_norm_params(self):
    net, params = narrow()
    x = images(2, (17, 20))
    for k in range(3):
      one, p1 = single_style(net, params, np.eye(3)[k])
      np.testing.assert_allclose(style.stylize(net, params, x, style=k),
                                 style.stylize(one, p1, x, style=0), atol=1e-5)
    w = [0.2, 0.5, 0.3]
    one, p1 = single_style(net, params, w)
    blend = style.stylize(net, params, x, style=w)
    np.testing.assert_allclose(blend, style.stylize(one, p1, x), atol=1e-5)
    # A blend is not the mix of the outputs (the network is nonlinear), and
    # differs from each style alone.
    for k in range(3):
      self.assertGreater(float(jnp.abs(blend - style.stylize(net, params, x, style=k)).max()), 1e-3)

  @parameterized.parameters(
      (3, "out of range"), (-1, "out of range"), ([0.5, 0.4, 0.0], "sum to 1"),
      ([1.5, -0.5, 0.0], ">= 0"), ([0.5, 0.5], r"shape \[3\]"),
      (0.5, "integer index"), (True, "integer index"), ([np.nan, 1, 0], "finite"))
  def test_bad_style(self, bad, message):
    net, params = narrow()
    with self.assertRaisesRegex(ValueError, message):
      style.stylize(net, params, images(1, (8, 8)), style=bad)

  def test_bad_images(self):
    net, params = narrow()
    with self.assertRaisesRegex(ValueError, r"\[0, 1\]"):
      style.stylize(net, params, 2.0 * images(1, (8, 8)))
    with self.assertRaisesRegex(ValueError, "RGB"):
      style.stylize(net, params, jnp.zeros((1, 8, 8, 4)))
    with self.assertRaisesRegex(ValueError, "at least 2x2"):
      style.stylize(net, params, jnp.zeros((1, 1, 8, 3)))

  @chex.variants(with_jit=True, without_jit=True)
  def test_noise_input(self):
    # Ulyanov et al.'s noise maps: one field per key, shared by the batch.
    net = style.Stylizer(num_styles=2, noise_channels=2, **NARROW)
    params = net.init_params(KEY)
    x = images(3, (13, 16))
    run = self.variant(lambda x, key: style.stylize(net, params, x, style=1, key=key))
    a = run(x, jax.random.PRNGKey(0))
    np.testing.assert_array_equal(a, style.stylize(net, params, x, style=1))
    self.assertGreater(float(jnp.abs(a - run(x, jax.random.PRNGKey(1))).max()), 1e-3)
    for i in range(3):  # the batch stylizes as its images one by one
      np.testing.assert_allclose(a[i], style.stylize(net, params, x[i], style=1),
                                 atol=1e-5)
    # On a flat image the noise is all the network has to paint with.
    flat = jnp.full((1, 24, 24, 3), 0.5)
    self.assertGreater(float(style.stylize(net, params, flat, style=0)[0, 8:16, 8:16].std()),
                       1e-3)
    plain = style.Stylizer(num_styles=2, **NARROW)
    out = style.stylize(plain, plain.init_params(KEY), flat, style=0)[0, 8:16, 8:16]
    self.assertLess(float(out.std()), 1e-5)
    noise = style.noise_like(net, x)
    self.assertEqual(noise.shape, (1, 13, 16, 2))
    self.assertIsNone(style.noise_like(plain, x))
    w = jax.nn.one_hot(jnp.array([1, 1, 1]), 2)
    np.testing.assert_allclose(net.apply({"params": params}, x, w, noise), a, atol=1e-5)
    with self.assertRaisesRegex(ValueError, r"noise \[N or 1, 13, 16, 2\]"):
      net.apply({"params": params}, x, w)
    with self.assertRaisesRegex(ValueError, "got \\(1, 13, 16, 1\\)"):
      net.apply({"params": params}, x, w, noise[..., :1])
    # The checkpoint keeps the noise input.
    path = os.path.join(tmpdir(self), "n.safetensors")
    style.save_stylizer(path, net, params, style_names=["a", "b"])
    net2, params2 = style.load_stylizer(path)
    self.assertEqual(net2.noise_channels, 2)
    np.testing.assert_allclose(style.stylize(net2, params2, x, style=1), a, atol=1e-5)

  def test_equals_the_same_network_in_torch(self):
    # An independent implementation (torch's reflection pad, conv,
    # instance_norm, nearest interpolate) with the same parameters, at an
    # odd size and a blend.
    from experiments.bench_style import TorchStylizer
    from weights_conversion import torch_reference
    import torch
    net, params = narrow()
    x = images(2, (19, 26))
    w = [0.2, 0.0, 0.8]
    with torch.no_grad():
      theirs = TorchStylizer(net, params, w)(torch_reference.nhwc_to_nchw(x))
    np.testing.assert_allclose(style.stylize(net, params, x, style=w),
                               torch_reference.nchw_to_nhwc(theirs), atol=1e-5)

  def test_save_load_round_trip(self):
    net, params = narrow()
    path = os.path.join(tmpdir(self), "s.safetensors")
    style.save_stylizer(path, net, params, style_names=["a", "b", "c"],
                        recipe={"steps": 3})
    net2, params2 = style.load_stylizer(path)
    self.assertEqual(net2, net)
    x = images(1, (12, 13))
    np.testing.assert_array_equal(style.stylize(net2, params2, x, style=2),
                                  style.stylize(net, params, x, style=2))
    info = style.stylizer_info(path)
    self.assertEqual(info["style_names"], ["a", "b", "c"])
    self.assertEqual(info["recipe"], {"steps": 3})
    with self.assertRaisesRegex(ValueError, "style names"):
      style.save_stylizer(path, net, params, style_names=["a"])
    # A file of another architecture is refused, naming the keys.
    models.checkpoint.save(path, {"x": np.zeros(2)}, {"format": "cnnviz_jax.stylizer/1",
                                                     "architecture": style.architecture(net),
                                                     "style_names": ["a", "b", "c"],
                                                     "recipe": {}})
    with self.assertRaisesRegex(ValueError, "missing keys"):
      style.load_stylizer(path)
    with self.assertRaises(FileNotFoundError):
      style.load_stylizer(path + ".absent")
    with open(path, "wb") as f:  # not safetensors at all
      f.write(b"not a weights file")
    with self.assertRaisesRegex(ValueError, "cannot read .* as safetensors"):
      style.load_stylizer(path)


def tiny_setup(steps, noise_channels=0):
  """A tiny training problem: the tiny loss network, two synthetic styles,
  one photo cropped at 16 px."""
  model = tiny_model()
  rng = np.random.default_rng(0)
  cols = (np.arange(24) // 3) % 2
  stripes = np.stack([np.broadcast_to(cols, (24, 24)), 0.3 * np.ones((24, 24)),
                      1 - np.broadcast_to(cols, (24, 24))], -1).astype(np.float32)
  dots = rng.uniform(0, 1, (24, 24, 3)).astype(np.float32)
  photo = samples.bundled_photos(max_side=64).get("china", samples.synthetic_pattern(64))
  pool = style.content_pool([photo], np.zeros((4, 32, 32, 3), np.uint8) + 128, 16, (32, 48))
  recipe = style.Recipe(style_names=("stripes", "dots"), channels=(4, 8, 8),
                        num_residual=1, noise_channels=noise_channels,
                        crop=16, batch=2, steps=steps,
                        learning_rate=1e-2, style_size=24, scales=(32, 48),
                        cifar_fraction=0.5, loss_network="tiny")
  return model, [stripes, dots], pool, recipe


class TrainTest(absltest.TestCase):

  def test_loss_falls(self):
    model, styles, pool, recipe = tiny_setup(40)
    out = style.train(recipe, model, styles, pool, tmpdir(self), log_every=10,
                      checkpoint_every=40, steps_per_call=2,
                      progress=lambda e: None)
    # The same fixed batches before and after training.
    layers, _ = _transfer.default_layers(model)
    targets = style.style_targets(model, styles, layers, recipe.style_size)
    loss = jax.jit(style.make_loss(out["stylizer"], model, recipe))
    init = out["stylizer"].init_params(jax.random.PRNGKey(recipe.seed), (16, 16))
    batches = [style.batch_for_step(pool, recipe, 1000 + i) for i in range(4)]
    value = lambda p: np.mean([float(loss(p, model.params, targets, x, s)[0])
                               for x, s in batches])
    before, after = value(init), value(out["params"])
    self.assertLess(after, 0.7 * before)
    self.assertEqual([e["step"] for e in out["history"]], [10, 20, 30, 40])

  def test_killed_and_resumed_equals_uninterrupted(self):
    import dataclasses
    # With a noise input: its maps are drawn from (seed, step) too.
    model, styles, pool, recipe = tiny_setup(8, noise_channels=1)
    quiet = lambda e: None
    full = style.train(recipe, model, styles, pool, tmpdir(self),
                       checkpoint_every=2, log_every=2, progress=quiet)
    work = tmpdir(self)

    def killer(entry):  # dies at step 6's report, before its checkpoint
      if entry["step"] >= 6:
        raise KeyboardInterrupt("killed")

    with self.assertRaises(KeyboardInterrupt):
      style.train(recipe, model, styles, pool, work, checkpoint_every=2,
                  log_every=2, progress=killer)
    # A sitting of 1 step, rounded up to the chunk's end (4 -> 6), then the
    # rest.
    part = style.train(recipe, model, styles, pool, work, checkpoint_every=2,
                       log_every=2, steps_per_run=1, progress=quiet)
    self.assertEqual((part["step"], part["done"]), (6, False))
    rest = style.train(recipe, model, styles, pool, work, checkpoint_every=2,
                       log_every=2, progress=quiet)
    self.assertEqual((rest["step"], rest["done"]), (8, True))
    chex.assert_trees_all_equal(rest["params"], full["params"])  # bit for bit
    net, params = style.load_stylizer(os.path.join(work, style.EXPORT))
    chex.assert_trees_all_equal(params, full["params"])
    self.assertEqual(style.stylizer_info(os.path.join(work, style.EXPORT))[
        "recipe"]["trained_steps"], 8)
    # A run ending inside a chunk (5 steps in chunks of 2) masks the rest:
    # Adam took 5 steps, not the chunk's 6 (the same compiled chunk).
    from cnnviz_jax.style import _fast_train
    work5 = tmpdir(self)
    five = style.train(dataclasses.replace(recipe, steps=5), model, styles, pool,
                       work5, checkpoint_every=2, log_every=2, progress=quiet)
    self.assertEqual([e["step"] for e in five["history"]], [2, 4, 5])
    stored = _fast_train._read(os.path.join(work5, _fast_train.CHECKPOINT))
    counts = {int(np.asarray(v)) for v in jax.tree_util.tree_leaves(stored["opt_state"])
              if np.asarray(v).dtype.kind == "i"}
    self.assertEqual(counts, {5})
    # Another recipe is refused, naming the field.
    with self.assertRaisesRegex(ValueError, "learning_rate"):
      style.train(dataclasses.replace(recipe, learning_rate=0.5), model, styles,
                  pool, work, progress=quiet)

  def test_a_recipe_stored_before_a_field_existed_resumes_with_its_default(self):
    from cnnviz_jax.style import _fast_train
    defaults = _fast_train.recipe_defaults(style.Recipe)
    self.assertEqual(defaults["noise_channels"], 0)
    self.assertEqual(defaults["channels"], [16, 32, 64])
    new = style.Recipe(style_names=("a",)).to_json()
    old = {k: v for k, v in new.items() if k != "noise_channels"}
    _fast_train._check_resume(old, new, 0, "ckpt", defaults)  # resumes
    with self.assertRaisesRegex(ValueError, "noise_channels: 0 -> 2"):
      _fast_train._check_resume(old, dict(new, noise_channels=2), 0, "ckpt",
                                defaults)
    with self.assertRaisesRegex(ValueError, "noise_channels: None -> 0"):
      _fast_train._check_resume(old, new, 0, "ckpt", {})  # no default known

  def test_chunks_divide_the_log_and_checkpoint_periods(self):
    from cnnviz_jax.style import _fast_train
    for args, length in (((10, 20, 100), 10), ((10, 10, 50), 10),
                         ((5, 10, 40), 5), ((4, 10, 40), 2), ((10, 7, 100), 1),
                         ((1, 20, 100), 1)):
      self.assertEqual(_fast_train.chunk_length(*args), length, args)
    with self.assertRaisesRegex(ValueError, "steps_per_call"):
      _fast_train.check_loop_args(None, 10, 10, 0)

  def test_batches_depend_on_seed_and_step_only(self):
    _, _, pool, recipe = tiny_setup(1)
    a, sa = style.batch_for_step(pool, recipe, 7)
    b, sb = style.batch_for_step(pool, recipe, 7)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(sa, sb)
    self.assertEqual(a.shape, (2, 16, 16, 3))
    self.assertEqual(sorted(sa.tolist()), [0, 1])  # each style once per batch
    self.assertFalse(np.array_equal(a, style.batch_for_step(pool, recipe, 8)[0]))


class LauncherTest(absltest.TestCase):

  def test_smoke_run(self):
    from experiments import train_fast_style
    from experiments.configs import train_fast_style as cfg
    config = cfg.get_config("smoke")
    config.steps = 4
    config.checkpoint_every = 2
    work = tmpdir(self)
    metrics = train_fast_style.run(config, work)
    self.assertEqual((metrics["step"], metrics["done"]), (4, True))
    for f in ("stylizer.safetensors", "checkpoint.msgpack", "history.json",
              "preview.png", "metrics.json", "config.json"):
      self.assertTrue(os.path.exists(os.path.join(work, f)), f)
    net, _ = style.load_stylizer(os.path.join(work, "stylizer.safetensors"))
    self.assertEqual(net.num_styles, 2)
    config.learning_rate = -1.0
    with self.assertRaisesRegex(ValueError, "learning_rate"):
      train_fast_style.run(config, work)


def gram_error(model, layers, x, target_grams):
  """Mean over layers of the relative Gram error of `x` `[1, H, W, 3]`."""
  _, acts = model.apply(model.params, x, taps=tuple(layers), logits=False)
  errs = [float(jnp.sum((style.gram_matrix(acts[l])[0] - t) ** 2) / jnp.sum(t ** 2))
          for l, t in zip(layers, target_grams)]
  return float(np.mean(errs))


class ShippedTest(absltest.TestCase):

  def test_shipped_network_moves_towards_every_style(self):
    from experiments.configs.train_fast_style import PAINTINGS
    paths = [os.path.join(SHARED_IMAGES, f"{p}.jpg") for p in PAINTINGS]
    if not all(os.path.exists(p) for p in paths):
      self.skipTest(f"the paintings are not in {SHARED_IMAGES} (only the "
                    "developers' machines and CI have ../shared/data)")
    net, params = style.load_stylizer()
    info = style.stylizer_info()
    self.assertEqual(info["style_names"], list(PAINTINGS))
    model = models.load(info["recipe"]["loss_network"])
    layers, _ = _transfer.default_layers(model)
    content = jnp.asarray(samples.bundled_photos(max_side=128)["china"])[None]
    for k, path in enumerate(paths):
      painting = data.load_image(path, max_side=info["recipe"]["style_size"])
      targets = [g[0] for g in style.style_grams(model, [jnp.asarray(painting)[None]], layers)]
      out = style.stylize(net, params, content, style=k)
      self.assertEqual(out.shape, content.shape)
      before = gram_error(model, layers, content, targets)
      after = gram_error(model, layers, out, targets)
      self.assertLess(after, before, f"style {k} ({PAINTINGS[k]})")


if __name__ == "__main__":
  absltest.main()
