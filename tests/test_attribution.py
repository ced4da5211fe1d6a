"""Tests of cnnviz_jax.attribution and cnnviz_jax.metrics.

Agreement with Captum runs on the identical network in PyTorch: the shipped
CIFAR model through `to_torch`, and a randomly initialized torchvision VGG11
through its conversion. Sizes are kept small for a slow CPU.
"""

import functools
import os

from absl.testing import absltest, parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import CIFAR_TAR, cifar_model, tiny_model, tmpdir
from cnnviz_jax import attribution as A
from cnnviz_jax import models
from cnnviz_jax import objectives as O
from cnnviz_jax import data

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")
from weights_conversion import torch_reference as tr  # noqa: E402

CIFAR = CIFAR_TAR


tiny = tiny_model
cifar = cifar_model


@functools.lru_cache(None)
def cifar_torch():
  return tr.to_torch(cifar())


@functools.lru_cache(None)
def tiny_inputs(n=3):
  x = jax.random.uniform(jax.random.PRNGKey(1), (n, 16, 16, 3))
  return x, np.arange(n, dtype=np.int32) % 10


@functools.lru_cache(None)
def cifar_inputs(n=2):
  """Real CIFAR test images when present, else smooth random images.

  A dither of +-2/1000 breaks the exact ties of flat regions (saturated sky):
  there the two frameworks' convolutions round differently, which decides
  max-pool and ReLU ties differently and moves gradients by a few percent.
  """
  if os.path.exists(CIFAR):
    x, y = data.load_cifar10(CIFAR, "test", limit=2)
    x, y = jnp.asarray(x[::2][:n].astype(np.float32) / 255), y[::2][:n]
  else:
    x = jax.random.uniform(jax.random.PRNGKey(2), (n, 8, 8, 3))
    x = jax.image.resize(x, (n, 32, 32, 3), "bilinear")
    y = np.arange(n) * 3 % 10
  x = x + jax.random.uniform(jax.random.PRNGKey(9), x.shape, minval=-2e-3,
                             maxval=2e-3)
  return jnp.clip(x, 0, 1), y.astype(np.int32)


@functools.lru_cache(None)
def vgg11_pair():
  """(torchvision vgg11 wrapped to take [0, 1] input, its JAX conversion)."""
  from weights_conversion import convert_torchvision
  net = tr.torchvision_model("vgg11", seed=0)
  for m in net.modules():
    if isinstance(m, torch.nn.ReLU):
      m.inplace = False  # Captum's backward hooks need out-of-place ReLUs
  params = convert_torchvision.convert_state_dict("vgg11", net.state_dict())
  model = models.build("vgg11", jax.tree_util.tree_map(jnp.asarray, params))
  wrapped = torch.nn.Sequential(tr.Normalize(model.mean, model.std), net).eval()
  return wrapped, model


def rel_err(ours, ref):
  ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
  return np.abs(ours - ref).max() / max(np.abs(ref).max(), 1e-30)


def torch_in(x):
  return tr.nhwc_to_nchw(np.asarray(x)).requires_grad_(True)


class GradientTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(
      ("saliency", A.saliency), ("guided", A.guided_backprop),
      ("deconvnet", A.deconvnet))
  def test_batch_equals_per_image(self, fn):
    model, (x, t) = tiny(), tiny_inputs()
    run = self.variant(lambda m, x, t: fn(m, x, t))
    batch = run(model, x, jnp.asarray(t))
    chex.assert_shape(batch, x.shape)
    for i in range(x.shape[0]):
      np.testing.assert_allclose(batch[i], run(model, x[i:i + 1], jnp.asarray(t[i:i + 1]))[0],
                                 rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(batch, fn(model, x, t), rtol=1e-5, atol=1e-7)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(
      ("conv_mean", ("relu2_1", 3)), ("conv_unit", ("conv2_1", 5, 1, 2)),
      ("fc", ("fc6", 4)), ("torch_path", ("features.4", 2)))
  def test_neuron_targets(self, spec):
    model, (x, _) = tiny(), tiny_inputs()
    g = self.variant(lambda m, x: A.saliency(m, x, spec))(model, x)
    chex.assert_shape(g, x.shape)
    layer = model.resolve(spec[0])

    def f(x):
      act = model.apply(model.params, x, taps=(layer,), logits=False)[1][layer]
      if act.ndim == 2:
        return act[:, spec[1]].sum()
      if len(spec) == 2:
        return act[..., spec[1]].mean(axis=(1, 2)).sum()
      return act[:, spec[2], spec[3], spec[1]].sum()
    np.testing.assert_allclose(g, jax.grad(f)(x), rtol=1e-5, atol=1e-7)

  def test_guided_relu_rules(self):
    x = jnp.array([-1.0, 2.0, 3.0, -4.0])
    g = jnp.array([1.0, -1.0, 2.0, -3.0])
    _, vjp = jax.vjp(A.guided_relu, x)
    np.testing.assert_array_equal(vjp(g)[0], [0, 0, 2, 0])
    _, vjp = jax.vjp(A.deconv_relu, x)
    np.testing.assert_array_equal(vjp(g)[0], [1, 0, 2, 0])


class ChunkingTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(("one", 1), ("three", 3), ("all", 16))
  def test_ig_chunk_exact(self, chunk):
    model, (x, t) = tiny(), tiny_inputs()
    ref = A.integrated_gradients(model, x, t, steps=7, method="riemann_middle",
                                 chunk_size=7)
    out = self.variant(lambda m, x, t: A.integrated_gradients(
        m, x, t, steps=7, method="riemann_middle", chunk_size=chunk))(model, x, jnp.asarray(t))
    np.testing.assert_allclose(out.attributions, ref.attributions, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(out.residual, ref.residual, atol=1e-5)

  @chex.variants(with_jit=True, without_jit=True)
  def test_smoothgrad_chunk_exact(self):
    model, (x, t) = tiny(), tiny_inputs()
    key = jax.random.PRNGKey(3)
    ref = A.smoothgrad(model, x, t, key=key, samples=6, rule="guided",
                       chunk_size=6)
    out = self.variant(lambda m, x, t, k: A.smoothgrad(
        m, x, t, key=k, samples=6, rule="guided", chunk_size=4))(
            model, x, jnp.asarray(t), key)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-7)

  def test_equal_chunks(self):
    from cnnviz_jax._chunks import equal_chunks
    for total in range(1, 30):
      for size in range(1, 12):
        chunks = equal_chunks(total, size)
        self.assertLen(chunks, -(-total // size))
        self.assertLen({len(ids) for ids, _ in chunks}, 1)
        self.assertLessEqual(len(chunks[0][0]), size)
        ids = np.concatenate([i for i, _ in chunks])
        valid = np.concatenate([v for _, v in chunks])
        np.testing.assert_array_equal(ids[valid], np.arange(total))
        self.assertTrue(valid[:total].all() and not valid[total:].any())
        np.testing.assert_array_equal(ids[~valid], total - 1)
        self.assertLess(len(ids) - total, len(chunks))  # < 1 pad per chunk
    with self.assertRaisesRegex(ValueError, ">= 1"):
      equal_chunks(0, 3)

  def test_uneven_chunks_compile_once(self):
    """Chunks of one length: a chunk size that does not divide the work
    compiles each chunk function once (a shorter last chunk compiled it
    again), and the results equal one chunk's."""
    from cnnviz_jax.attribution import _faithfulness, _gradients, _occlusion
    model, (x, t) = tiny(), tiny_inputs()
    cases = [
        (_gradients._ig_chunk, lambda c: A.integrated_gradients(
            model, x, t, steps=7, chunk_size=c).attributions),
        (_gradients._smooth_chunk, lambda c: A.smoothgrad(
            model, x, t, key=jax.random.PRNGKey(0), samples=5, chunk_size=c)),
        (_occlusion._occlusion_chunk, lambda c: A.occlusion(
            model, x, t, window=8, stride=4, chunk_size=c,
            _incremental_path=False)),
        (_faithfulness._curve_chunk, lambda c: A.deletion(
            model, x, t, jnp.ones(x.shape[:3]), steps=6, chunk_size=c).scores)]
    for chunk_fn, run in cases:
      ref = run(100)
      chunk_fn.clear_cache()
      # 7 IG steps, 5 samples, 9 positions, 7 curve points in chunks of at
      # most 4: 4 + 3, 4 + 1, 4 + 4 + 1, 4 + 3 before; now one length each.
      out = run(4)
      self.assertEqual(chunk_fn._cache_size(), 1, chunk_fn.__name__)
      np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)

  def test_smoothgrad_variants(self):
    model, (x, t) = tiny(), tiny_inputs()
    kw = dict(key=jax.random.PRNGKey(3), samples=5, chunk_size=2)
    mean = A.smoothgrad(model, x, t, **kw)
    sq = A.smoothgrad(model, x, t, variant="squared", **kw)
    var = A.smoothgrad(model, x, t, variant="vargrad", **kw)
    np.testing.assert_allclose(var, jnp.maximum(sq - mean ** 2, 0), atol=1e-6)
    self.assertTrue(bool(jnp.all(sq >= mean ** 2 - 1e-6)))

  def test_smoothgrad_mean_of_noisy_gradients(self):
    model, (x, t) = tiny(), tiny_inputs()
    key = jax.random.PRNGKey(3)
    out = A.smoothgrad(model, x, t, key=key, samples=3, sigma=0.2)
    span = (x.max(axis=(1, 2, 3)) - x.min(axis=(1, 2, 3)))[:, None, None, None]
    # The noisy copies leave [0, 1], which the public functions refuse on
    # concrete arrays; under jit the range is not checked.
    noisy = jax.jit(lambda s: x + 0.2 * span * jax.random.normal(
        jax.random.fold_in(key, s), x.shape))
    grad = jax.jit(lambda x: A.saliency(model, x, jnp.asarray(t)))
    ref = sum(grad(noisy(s)) for s in range(3)) / 3
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(("mean", "mean"), ("zeros", "zeros"),
                                  ("blur", "blur"), ("const", 0.5))
  def test_occlusion(self, fill):
    model, (x, t) = tiny(), tiny_inputs()
    run = self.variant(lambda m, x, t, c: A.occlusion(
        m, x, t, window=(6, 4), stride=(5, 3), fill=fill, chunk_size=c),
        static_argnums=3)
    out = run(model, x, jnp.asarray(t), 2)
    chex.assert_shape(out, (3, 3, 5))
    np.testing.assert_allclose(out, run(model, x, jnp.asarray(t), 15), rtol=1e-5, atol=1e-7)
    # Entry (i, j) is the drop of the probability when the patch at (5 i, 3 j)
    # is covered: p(x) - p(x covered).
    fill_img = A.fill_images(model, x, fill)
    covered = x.at[:, 5:11, 3:7].set(fill_img[:, 5:11, 3:7])
    p = lambda x: jax.nn.softmax(model(x)[0])[np.arange(3), t]
    np.testing.assert_allclose(out[:, 1, 1], p(x) - p(covered), rtol=1e-4,
                               atol=1e-7)


class CaptumCifarTest(parameterized.TestCase):
  """Shipped CIFAR model vs Captum on `to_torch` of it (identical network)."""

  def test_saliency_guided_deconvnet(self):
    x, t = cifar_inputs()
    net = cifar_torch()
    for ours, cls in ((A.saliency, captum_attr.Saliency),
                      (A.guided_backprop, captum_attr.GuidedBackprop),
                      (A.deconvnet, captum_attr.Deconvolution)):
      kw = {"abs": False} if cls is captum_attr.Saliency else {}
      ref = tr.nchw_to_nhwc(cls(net).attribute(torch_in(x), target=torch.from_numpy(t).long(), **kw))
      self.assertLess(rel_err(ours(cifar(), x, t), ref), 1e-3, cls.__name__)

  @parameterized.parameters(*A.IG_METHODS)
  def test_integrated_gradients(self, method):
    x, t = cifar_inputs()
    base = np.full(x.shape, 0.25, np.float32)
    ours = A.integrated_gradients(cifar(), x, t, baselines=base, steps=10,
                                  method=method, chunk_size=3)
    ref = captum_attr.IntegratedGradients(cifar_torch()).attribute(
        torch_in(x), baselines=tr.nhwc_to_nchw(base), target=torch.from_numpy(t).long(),
        n_steps=10, method=method)
    self.assertLess(rel_err(ours.attributions, tr.nchw_to_nhwc(ref)), 1e-3)

  @parameterized.parameters(("relu4_1", False), ("relu4_1", True), ("conv3_2", False))
  def test_grad_cam(self, layer, relu):
    x, t = cifar_inputs()
    net = cifar_torch()
    ours = A.grad_cam(cifar(), x, t, layer=layer, relu=relu)
    ref = captum_attr.LayerGradCam(net, getattr(net, layer)).attribute(
        torch_in(x), target=torch.from_numpy(t).long(), relu_attributions=relu)
    self.assertEqual(ours.shape, (x.shape[0], *ref.shape[2:]))
    self.assertLess(rel_err(ours, ref.detach().numpy()[:, 0]), 1e-3)

  def test_guided_grad_cam(self):
    x, t = cifar_inputs()
    net = cifar_torch()
    ours = A.guided_grad_cam(cifar(), x, t, layer="relu3_2")
    ref = captum_attr.GuidedGradCam(net, net.relu3_2).attribute(
        torch_in(x), target=torch.from_numpy(t).long())
    self.assertLess(rel_err(ours, tr.nchw_to_nhwc(ref)), 1e-3)

  def test_neuron_gradient(self):
    x, _ = cifar_inputs()
    net = cifar_torch()
    ours = A.saliency(cifar(), x, ("conv3_1", 7, 2, 5))
    ref = captum_attr.NeuronGradient(net, net.conv3_1).attribute(
        torch_in(x), neuron_selector=(7, 2, 5))
    self.assertLess(rel_err(ours, tr.nchw_to_nhwc(ref)), 1e-3)


  def test_occlusion(self):
    # Same sign as Captum: f(x) - f(x occluded), logits here. Captum gives
    # each pixel the mean over the windows covering it; so do we from ours.
    x, t = cifar_inputs()
    window, stride = 12, 5  # overlapping windows, 5 x 5 positions
    ours = np.asarray(A.occlusion(cifar(), x, t, window=window, stride=stride,
                                  fill=0.5, probabilities=False))
    ref = captum_attr.Occlusion(cifar_torch()).attribute(
        torch_in(x), target=torch.from_numpy(t).long(),
        sliding_window_shapes=(3, window, window), strides=(3, stride, stride),
        baselines=0.5)
    h, w = x.shape[1:3]
    total, count = np.zeros((len(t), h, w)), np.zeros((h, w))
    for i in range(ours.shape[1]):
      for j in range(ours.shape[2]):
        sl = np.s_[i * stride:i * stride + window, j * stride:j * stride + window]
        total[(slice(None),) + sl] += ours[:, i, j, None, None]
        count[sl] += 1
    self.assertGreater(np.abs(ours).max(), 1e-2)
    self.assertLess(rel_err(total / count, ref.detach().numpy()[:, 0]), 1e-3)

  def test_objective_target_equals_shorthand(self):
    # An Objective and its shorthand explain the same thing; a weighted sum is
    # linear in the gradients.
    x, t = cifar_inputs()
    m = cifar()
    np.testing.assert_allclose(A.saliency(m, x, O.class_logit(t)),
                               A.saliency(m, x, t), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(A.grad_cam(m, x, O.channel("fc6", 3), layer="relu3_2"),
                               A.grad_cam(m, x, ("fc6", 3), layer="relu3_2"),
                               rtol=1e-6, atol=1e-9)
    both = A.saliency(m, x, 2.0 * O.class_logit(t) - O.neuron("conv3_1", 7, 2, 5))
    np.testing.assert_allclose(both, 2.0 * A.saliency(m, x, t) - A.saliency(
        m, x, ("conv3_1", 7, 2, 5)), rtol=1e-4, atol=1e-6)


class CaptumTorchvisionTest(absltest.TestCase):
  """A torchvision VGG11 (random init) vs its conversion, at 64x64."""

  def test_all_methods(self):
    net, model = vgg11_pair()
    x = jax.random.uniform(jax.random.PRNGKey(4), (2, 64, 64, 3))
    t = np.array([3, 917], np.int32)
    tt = torch.from_numpy(t).long()
    layer = net[1].features[15]  # features.15: the relu after conv5_1
    cases = [
        (A.saliency(model, x, t),
         captum_attr.Saliency(net).attribute(torch_in(x), target=tt, abs=False)),
        (A.guided_backprop(model, x, t),
         captum_attr.GuidedBackprop(net).attribute(torch_in(x), target=tt)),
        # Every IG method is checked on the CIFAR model. Here a grey baseline:
        # near-black points of this random-init VGG put some units within
        # float rounding of a ReLU kink, where the frameworks can disagree.
        (A.integrated_gradients(model, x, t, baselines=0.5, steps=6,
                                method="riemann_trapezoid").attributions,
         captum_attr.IntegratedGradients(net).attribute(
             torch_in(x), baselines=0.5, target=tt, n_steps=6,
             method="riemann_trapezoid")),
        (A.guided_grad_cam(model, x, t, layer="features.15"),
         captum_attr.GuidedGradCam(net, layer).attribute(torch_in(x), target=tt)),
    ]
    for i, (ours, ref) in enumerate(cases):
      self.assertLess(rel_err(ours, tr.nchw_to_nhwc(ref)), 1e-3, f"case {i}")
    cam = A.grad_cam(model, x, t, layer="features.15", relu=False)
    ref = captum_attr.LayerGradCam(net, layer).attribute(torch_in(x), target=tt)
    self.assertLess(rel_err(cam, ref.detach().numpy()[:, 0]), 1e-3)


class PropertiesTest(parameterized.TestCase):

  def test_ig_completeness(self):
    x, t = cifar_inputs()
    r = A.integrated_gradients(cifar(), x, t, steps=64)
    self.assertTrue(np.all(np.abs(r.residual) <= 0.01 * np.abs(r.delta) + 1e-3),
                    f"residual {r.residual} delta {r.delta}")

  def test_ig_steps_match_captum(self):
    from captum.attr._utils import approximation_methods as am
    for method in A.IG_METHODS:
      for n in (2, 7, 50):
        step_sizes, alphas = am.approximation_parameters(method)
        a, w = A.ig_steps(n, method)
        # Captum uses float32 torch.linspace; ours agrees to one float32 ulp.
        np.testing.assert_allclose(a, alphas(n), rtol=0, atol=1.2e-7)
        np.testing.assert_allclose(w, step_sizes(n), rtol=1e-12)

  def test_upsample_nearest_matches_torch(self):
    m = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 5))
    ours = A.upsample(m, (12, 17), "nearest")
    ref = torch.nn.functional.interpolate(torch.from_numpy(np.asarray(m))[:, None],
                                          size=(12, 17), mode="nearest")[:, 0]
    np.testing.assert_array_equal(ours, ref.numpy())

  def test_heatmap_normalize_overlay(self):
    a = jnp.array([[[[1.0, -3.0, 2.0]]]])
    self.assertEqual(float(A.heatmap(a)[0, 0, 0]), 3.0)
    self.assertEqual(float(A.heatmap(a, "sum")[0, 0, 0]), 0.0)
    self.assertEqual(float(A.heatmap(a, "abs_sum")[0, 0, 0]), 6.0)
    np.testing.assert_allclose(A.heatmap(a, "norm")[0, 0, 0], np.sqrt(14.0))
    maps = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8))
    n = A.normalize(maps)
    self.assertGreaterEqual(float(n.min()), 0.0)
    self.assertLessEqual(float(n.max()), 1.0)
    self.assertLessEqual(float(jnp.abs(A.normalize(maps, signed=True)).max()), 1.0)
    ov = A.overlay(jnp.zeros((2, 16, 16, 3)), maps)
    self.assertEqual(ov.shape, (2, 16, 16, 3))
    # Bad input names the problem and what is accepted.
    with self.assertRaisesRegex(ValueError, r"maps \[N, h, w\] with N = 2.*heatmap"):
      A.overlay(jnp.zeros((2, 16, 16, 3)), jnp.zeros((2, 16, 16, 3)))
    with self.assertRaisesRegex(ValueError, r"images \[N, H, W, 3\]"):
      A.overlay(jnp.zeros((16, 16, 3)), maps)
    with self.assertRaisesRegex(ValueError, "unknown cmap 'nope'"):
      A.overlay(jnp.zeros((2, 16, 16, 3)), maps, cmap="nope")
    from cnnviz_jax import viz
    with self.assertRaisesRegex(ValueError, "no images"):
      viz.save_grid(os.path.join(tmpdir(self), "x.png"), [])
    with self.assertRaisesRegex(ValueError, "titles has 1 entries for 2 images"):
      viz.save_grid(os.path.join(tmpdir(self), "x.png"), [np.zeros((4, 4, 3))] * 2,
                    titles=["a"])

  def test_segment_from_saliency(self):
    pytest.importorskip("cv2")
    img = np.zeros((32, 32, 3), np.float32) + 0.1
    img[8:24, 8:24] = [0.9, 0.2, 0.2]
    sal = np.zeros((32, 32), np.float32)
    sal[10:22, 10:22] = 1.0
    sal += np.random.RandomState(0).uniform(0, 0.1, sal.shape)
    mask = A.segment_from_saliency(img, sal)
    self.assertEqual(mask.dtype, bool)
    self.assertGreater(mask[10:22, 10:22].mean(), 0.9)
    self.assertLess(mask[:6].mean(), 0.1)
    with self.assertRaisesRegex(ValueError, "saliency_map"):
      A.segment_from_saliency(img, sal[:8])

  def test_randomization_decorrelates(self):
    x, t = cifar_inputs()
    r = A.randomization_check(cifar(), x, t, A.saliency, key=jax.random.PRNGKey(0))
    self.assertEqual(r.layers[0], "fc8")
    self.assertEqual(r.layers[-1], "conv1_1")
    self.assertEqual(r.correlations.shape, (len(r.layers), x.shape[0]))
    corr = r.correlations.mean(axis=1)
    self.assertLess(corr[-1], 0.3, dict(zip(r.layers, corr)))
    self.assertLess(corr[-1], corr[0] - 0.2, dict(zip(r.layers, corr)))

  def test_deletion_beats_random(self):
    if not os.path.exists(CIFAR):
      self.skipTest(f"CIFAR-10 test set not found at {CIFAR}")
    x, t = data.load_cifar10(CIFAR, "test", limit=4)
    x = jnp.asarray(x.astype(np.float32) / 255)
    model = cifar()
    # Blurred-out 4x4 blocks: on 32x32 images scattered single black pixels
    # act like adversarial noise and favour the random order. Grad-CAM at
    # relu3_2 (8x8); at relu4_1 (4x4) it does not beat random on this model.
    auc = lambda maps: float(A.deletion(
        model, x, t, maps, steps=10, fill="blur", patch=4).auc.mean())
    random = auc(A.random_heatmaps(x, key=jax.random.PRNGKey(0)))
    sal = auc(A.explain(model, x, t, "saliency"))
    cam = auc(A.explain(model, x, t, "grad_cam", layer="relu3_2"))
    self.assertLess(sal, random - 0.05)
    self.assertLess(cam, random - 0.02)
    ins = A.insertion(model, x[:4], t[:4], A.explain(model, x[:4], t[:4],
                                                          "saliency"), steps=4)
    self.assertEqual(ins.scores.shape, (4, 5))

  def test_curve_chunk_exact(self):
    model, (x, t) = tiny(), tiny_inputs()
    maps = A.explain(model, x, t, "saliency")
    a = A.deletion(model, x, t, maps, steps=8, chunk_size=3)
    b = A.deletion(model, x, t, maps, steps=8, chunk_size=9)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5)
    np.testing.assert_allclose(a.scores[:, 0], jax.nn.softmax(model(x)[0])[np.arange(3), t],
                               rtol=1e-5)
    self.assertLess(float(jnp.abs(a.scores[:, -1] - jax.nn.softmax(
        model(jnp.zeros_like(x))[0])[np.arange(3), t]).max()), 1e-5)


class ErrorsTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ("rank", np.zeros((16, 16, 3), np.float32), "rank 4"),
      ("channels", np.zeros((1, 16, 16, 1), np.float32), "3 RGB channels"),
      ("dtype", np.zeros((1, 16, 16, 3), np.uint8), "float32"),
      ("range", np.full((1, 16, 16, 3), 2.0, np.float32), r"\[0, 1\]"),
      ("small", np.zeros((1, 2, 2, 3), np.float32), "at least"))
  def test_bad_images(self, images, msg):
    for fn in (A.saliency, functools.partial(A.grad_cam, layer="relu2_1"),
               functools.partial(A.occlusion, window=2, stride=2)):
      with self.assertRaisesRegex(ValueError, msg):
        fn(tiny(), images, np.zeros(1, np.int32))

  @parameterized.named_parameters(
      ("class_range", np.array([0, 10, 1]), "out of range"),
      ("class_float", np.array([0.0, 1.0, 2.0]), "integer"),
      ("class_shape", np.array([0, 1]), r"\[N\]"),
      ("scalar", 3, "scalar"),
      ("layer", ("conv9_9", 0), "unknown layer"),
      ("channel", ("relu2_1", 16), "channel 16 out of range"),
      ("position", ("relu2_1", 0, 9, 0), "position"),
      ("fc_position", ("fc6", 0, 1, 1), "not spatial"),
      ("spec_len", ("relu2_1", 0, 1), "neuron target"))
  def test_bad_targets(self, targets, msg):
    x, _ = tiny_inputs()
    with self.assertRaisesRegex(ValueError, msg):
      A.saliency(tiny(), x, targets)

  def test_bad_options(self):
    model, (x, t) = tiny(), tiny_inputs()
    cases = [
        (lambda: A.grad_cam(model, x, t, layer="nope"), "unknown layer"),
        (lambda: A.grad_cam(model, x, t, layer="fc6"), "not spatial"),
        (lambda: A.integrated_gradients(model, x, t, method="simpson"), "simpson"),
        (lambda: A.integrated_gradients(model, x, t, steps=1,
                                        method="riemann_left"), "steps"),
        (lambda: A.integrated_gradients(model, x, t, chunk_size=0), "chunk_size"),
        (lambda: A.integrated_gradients(model, x, t, baselines=2.0), r"\[0, 1\]"),
        (lambda: A.smoothgrad(model, x, t, key=jax.random.PRNGKey(0),
                              variant="x"), "variant"),
        (lambda: A.smoothgrad(model, x, t, key=jax.random.PRNGKey(0),
                              sigma=-1.0), "sigma"),
        (lambda: A.gradient(model, x, t, rule="lrp"), "rule"),
        (lambda: A.occlusion(model, x, t, window=32), "larger"),
        (lambda: A.occlusion(model, x, t, fill="pink"), "fill"),
        (lambda: A.explain(model, x, t, "lime"), "unknown method"),
        (lambda: A.heatmap(x, "median"), "reduce"),
        (lambda: A.heatmap(jnp.zeros((1, 4, 4)), "median"), "reduce"),
        (lambda: A.deletion(model, x, t, jnp.zeros((2, 16, 16))), "heatmaps"),
        (lambda: A.deletion(model, x, t, jnp.zeros((3, 16, 16)), patch=3), "patch"),
    ]
    for fn, msg in cases:
      with self.assertRaisesRegex(ValueError, msg):
        fn()


  def test_occlusion_fill_checked(self):
    model, (x, t) = tiny(), tiny_inputs()
    cases = [
        (dict(fill="blur", blur_sigma=0.0), "blur_sigma"),
        (dict(fill="blur", blur_sigma=-2.0), "blur_sigma"),
        (dict(fill=float("nan")), r"finite and in \[0, 1\]"),
        (dict(fill=2.0), r"finite and in \[0, 1\]"),
        (dict(fill=-0.5), r"finite and in \[0, 1\]"),
        (dict(fill=np.zeros((5, 16, 16, 3), np.float32)), "broadcastable"),
        (dict(window=2.5), "window"),
        (dict(stride=(2, 0)), "stride"),
    ]
    for kw, msg in cases:
      with self.assertRaisesRegex(ValueError, msg, msg=str(kw)):
        A.occlusion(model, x, t, **kw)
      if "fill" in kw:
        with self.assertRaisesRegex(ValueError, msg, msg=str(kw)):
          A.deletion(model, x, t, jnp.zeros((3, 16, 16)), steps=2, **kw)

  def test_non_integer_channels_refused(self):
    model, (x, _) = tiny(), tiny_inputs()
    for fn in (A.saliency, functools.partial(A.occlusion, window=8, stride=8),
               functools.partial(A.integrated_gradients, steps=2)):
      with self.assertRaisesRegex(ValueError, "integer"):
        fn(model, x, ("relu2_1", 1.7))
      with self.assertRaisesRegex(ValueError, "integer"):
        fn(model, x, ("relu2_1", 1, 1.0, 2))
    with self.assertRaisesRegex(ValueError, "integer"):
      A.grad_cam(model, x, ("relu2_2", 1.5), layer="relu2_1")
    with self.assertRaisesRegex(ValueError, "integer"):
      A.target_scores(model, x, ("fc6", True))

  def test_empty_batch(self):
    model = tiny()
    x = jnp.zeros((0, 16, 16, 3))
    t = np.zeros(0, np.int32)
    key = jax.random.PRNGKey(0)
    self.assertEqual(A.saliency(model, x, t).shape, (0, 16, 16, 3))
    ig = A.integrated_gradients(model, x, t, steps=4)
    self.assertEqual([a.shape for a in ig], [(0, 16, 16, 3), (0,), (0,)])
    self.assertEqual(A.smoothgrad(model, x, t, key=key, samples=2).shape,
                     (0, 16, 16, 3))
    self.assertEqual(A.occlusion(model, x, t, window=8, stride=4).shape, (0, 3, 3))
    self.assertEqual(A.deletion(model, x, t, jnp.zeros((0, 16, 16)),
                                steps=2).scores.shape, (0, 3))

  def test_arguments_checked_before_computing(self):
    model, (x, t) = tiny(), tiny_inputs()
    cases = [
        (lambda: A.integrated_gradients(model, x, t, baselines=np.zeros((2, 16, 16, 3))),
         "baselines must be .* broadcastable"),
        (lambda: A.integrated_gradients(model, x, t, baselines=np.zeros((5, 3))),
         "baselines must be .* broadcastable"),
        (lambda: A.smoothgrad(model, x, t, key=None), "PRNG key"),
        (lambda: A.smoothgrad(model, x, t, key=0), "PRNG key"),
        (lambda: A.smoothgrad(model, x, t, key=jax.random.PRNGKey(0),
                              sigma=float("inf")), "sigma"),
        (lambda: A.smoothgrad(model, x, t, key=jax.random.PRNGKey(0),
                              samples=True), "samples"),
        (lambda: A.explain(model, x, t, "smoothgrad"), "needs a PRNG key"),
        (lambda: A.faithfulness(model, x, t, {}, key=None), "PRNG key"),
        (lambda: A.random_heatmaps(x, key=3), "PRNG key"),
        (lambda: A.randomization_check(model, x, t, A.saliency, key=None),
         "PRNG key"),
        (lambda: A.deletion(model, x, t, jnp.full((3, 16, 16), jnp.nan)),
         "NaN"),
        (lambda: A.saliency(model, x, O.class_logit(np.array([0, 1]))),
         "leading axis N = 3"),
        (lambda: A.grad_cam(model, x, ("relu1_1", 0), layer="relu2_1"),
         "must come after"),
    ]
    for fn, msg in cases:
      with self.assertRaisesRegex(ValueError, msg):
        fn()

  def test_explain_occlusion_is_the_drop(self):
    # No negation in explain: the map is occlusion's own f(x) - f(occluded).
    model, (x, t) = tiny(), tiny_inputs()
    kw = dict(window=8, stride=4)
    np.testing.assert_array_equal(A.explain(model, x, t, "occlusion", **kw),
                                  A.occlusion(model, x, t, **kw))


if __name__ == "__main__":
  absltest.main()
