"""Any model: the toolbox on a user's Flax module and a plain JAX function,
and torchvision's ResNets through `from_flax` checked against torchvision and
Captum on the identical network.

`UserNet` is what a researcher would write (a skip connection, BatchNorm with
running statistics, `nn.relu`); its `act` attribute builds the same network
with the guided/deconvnet ReLU by hand, the reference for the program rewrite.
"""

import functools
import tempfile

from absl.testing import absltest, parameterized
import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnviz_jax import attribution as A
from cnnviz_jax import models, synthesis
from cnnviz_jax.models import resnet, rewrite

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
captum_attr = pytest.importorskip("captum.attr")
from weights_conversion import convert_resnet, convert_torchvision  # noqa: E402


class UserBlock(nn.Module):
  features: int
  act: callable = nn.relu

  @nn.compact
  def __call__(self, x):
    y = self.act(nn.BatchNorm(use_running_average=True, name="bn")(
        nn.Conv(self.features, (3, 3), name="conv_a")(x)))
    y = nn.Conv(self.features, (3, 3), name="conv_b")(y)
    return self.act(y + x)  # the skip connection


class UserNet(nn.Module):
  act: callable = nn.relu

  @nn.compact
  def __call__(self, x):
    x = self.act(nn.Conv(8, (3, 3), name="stem")(x))
    x = UserBlock(8, self.act, name="block1")(x)
    x = nn.max_pool(x, (2, 2), (2, 2))
    x = UserBlock(8, self.act, name="block2")(x)
    return nn.Dense(10, name="head")(x.mean(axis=(1, 2)))


HW = (16, 16)


@functools.lru_cache(None)
def user_variables():
  """Variables of UserNet: He-scaled weights and non-trivial running
  statistics (so that BatchNorm is really exercised), drawn with numpy from a
  fixed seed: no per-initializer compilation."""
  shapes = jax.eval_shape(UserNet().init, jax.random.PRNGKey(0),
                          jnp.zeros((1, *HW, 3)))
  rng = np.random.RandomState(0)

  def draw(path, s):
    leaf = path[-1].key
    if leaf == "kernel":
      return rng.normal(0, np.sqrt(2 / np.prod(s.shape[:-1])), s.shape)
    if leaf in ("bias", "mean"):
      return rng.uniform(-0.2, 0.2, s.shape)
    return rng.uniform(0.5, 1.5, s.shape)  # BatchNorm scale and var
  return jax.tree_util.tree_map_with_path(
      lambda p, s: jnp.asarray(draw(p, s), jnp.float32), shapes)


@functools.lru_cache(None)
def user_model():
  return models.from_flax(UserNet(), user_variables(), name="usernet",
                          mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                          input_size=HW, min_size=8)


def user_inputs(n=2):
  x = jax.random.uniform(jax.random.PRNGKey(1), (n, *HW, 3))
  return x, jnp.asarray(np.array([3, 7][:n], np.int32))


def hand_grad(act, x, t):
  """d logit_t / d image of UserNet built with `act` (no wrapper involved)."""
  net = UserNet(act=act)

  def score(x):
    logits = net.apply(user_variables(), (x - 0.5) / 0.25)
    return jnp.take_along_axis(logits, t[:, None], 1).sum()
  return jax.grad(score)(x)


def rel_err(ours, ref):
  ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
  return np.abs(ours - ref).max() / max(np.abs(ref).max(), 1e-30)


# Small settings per method: enough to exercise chunking, cheap on CPU.
METHOD_KW = {
    "smoothgrad": dict(key=jax.random.PRNGKey(3), samples=3, chunk_size=2),
    "integrated_gradients": dict(steps=4, chunk_size=3),
    "grad_cam": dict(layer="block2"),
    "guided_grad_cam": dict(layer="block2"),
    "occlusion": dict(window=6, stride=5, chunk_size=4),
}


class UserFlaxTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*[(m, m) for m in A.METHODS])
  def test_every_method(self, method):
    model, (x, t) = user_model(), user_inputs()
    fn = A.METHODS[method]
    out = self.variant(lambda m, x, t: fn(m, x, t, **METHOD_KW.get(method, {})))(
        model, x, t)
    if method == "integrated_gradients":
      # Completeness (Sundararajan et al. 2017, prop. 1) holds for the
      # wrapped network as for any: the residual is small against f(x) - f(0).
      self.assertLess(float(jnp.abs(out.residual).max()),
                      0.1 * float(jnp.abs(out.delta).max()))
      out = out.attributions
    self.assertTrue(bool(jnp.all(jnp.isfinite(out))))
    self.assertGreater(float(jnp.abs(out).max()), 0.0)
    if method in ("saliency", "guided_backprop", "deconvnet"):
      act = {"saliency": nn.relu, "guided_backprop": A.guided_relu,
             "deconvnet": A.deconv_relu}[method]
      np.testing.assert_allclose(out, hand_grad(act, x, t), rtol=1e-5,
                                 atol=1e-6)
    if method == "grad_cam":
      _, state = UserNet().apply(user_variables(), (x - 0.5) / 0.25,
                                 capture_intermediates=True,
                                 mutable=["intermediates"])
      acts = state["intermediates"]["block2"]["__call__"][0]
      head = user_variables()["params"]["head"]
      # After block2 the network is mean + Dense: the gradient w.r.t. the
      # activation is the class's weight column spread over the positions.
      w = head["kernel"][:, t].T / (acts.shape[1] * acts.shape[2])
      cam = jnp.einsum("nc,nhwc->nhw", w, acts)
      np.testing.assert_allclose(out, jax.nn.relu(cam), rtol=1e-5, atol=1e-6)
    if method == "occlusion":
      self.assertEqual(out.shape, (2, 3, 3))
      patched = x.at[:, 5:11, 10:16].set(jnp.asarray(model.mean))
      prob = lambda x: jax.nn.softmax(model(x)[0])[jnp.arange(2), t]
      # The score's drop when the patch at row 1, column 2 is covered.
      np.testing.assert_allclose(out[:, 1, 2], prob(x) - prob(patched),
                                 rtol=1e-4, atol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_synthesis(self):
    model, (x, _) = user_model(), user_inputs()
    key = jax.random.PRNGKey(5)
    run = self.variant(lambda m, x, k: (
        synthesis.visualize_class(m, [3, 7], key=k, steps=4),
        synthesis.invert(m, x[:1], "block1", key=k, steps=4),
        synthesis.deepdream(m, x[0], "block2/conv_b", key=k, octaves=1,
                            steps=4)))
    vis, inv, dream = run(model, x, key)
    chex.assert_shape(vis, (2, *HW, 3))
    chex.assert_shape(inv, (1, *HW, 3))
    chex.assert_shape(dream, (*HW, 3))
    # Each optimization moved its objective the right way.
    # Class-specific: each image favours its own class over the other's.
    margin = model(vis)[0][:, 3] - model(vis)[0][:, 7]
    self.assertGreater(float(margin[0]), float(margin[1]))
    act = lambda im: model(im, taps=("block2/conv_b",))[1]["block2/conv_b"]
    self.assertGreater(float(jnp.sum(act(dream[None]) ** 2)),
                       float(jnp.sum(act(x[:1]) ** 2)))
    self.assertTrue(bool(jnp.all((inv >= 0) & (inv <= 1))))

  def test_taps_and_aliases(self):
    model, (x, t) = user_model(), user_inputs()
    self.assertEqual(A.default_cam_layer(model), "block2")
    np.testing.assert_allclose(A.explain(model, x, t, "grad_cam"),
                               A.grad_cam(model, x, t, layer="block2"))
    self.assertEqual(model.layer_names[-3:], ("block2/conv_b", "block2", "head"))
    self.assertEqual(model.layer_shape("block2"), (8, 8, 8))
    self.assertEqual(model.layer_shape("block2", (32, 24)), (16, 12, 8))
    _, acts = model(x, taps=("block1.bn", "block1/bn"))
    np.testing.assert_array_equal(acts["block1.bn"], acts["block1/bn"])
    # A perturbation enters where the tap is computed: the gradient there is
    # the head's weight spread over block2's 8x8 positions, and inside a
    # block (no cut) it is defined too.
    zero = {"block2": jnp.zeros((2, 8, 8, 8)), "block2/conv_a": jnp.zeros((2, 8, 8, 8))}
    grads = jax.grad(lambda d: jnp.take_along_axis(
        model(x, perturb=d)[0], t[:, None], 1).sum())(zero)
    w = user_variables()["params"]["head"]["kernel"][:, t].T / 64
    np.testing.assert_allclose(grads["block2"],
                               jnp.broadcast_to(w[:, None, None], (2, 8, 8, 8)),
                               rtol=1e-6)
    self.assertGreater(float(jnp.abs(grads["block2/conv_a"]).max()), 0.0)
    shifted = model(x, taps=("block2",), perturb={"block2": zero["block2"] + 1})[1]
    np.testing.assert_allclose(shifted["block2"], model(x, taps=("block2",))[1][
        "block2"] + 1, rtol=1e-6)

  def test_grad_cam_inside_a_residual_block(self):
    # The reference: Flax's own method interception adds the perturbation at
    # block2's first conv (the skip connection passes around it), so the
    # gradient there does not come from this library's program rewrite.
    model, (x, t) = user_model(), user_inputs()
    variables = user_variables()

    def score(delta):
      def add_delta(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if context.module.path == ("block2", "conv_a") and context.method_name == "__call__":
          return out + delta
        return out
      with nn.intercept_methods(add_delta):
        logits, state = UserNet().apply(variables, model.normalize(x),
                                        capture_intermediates=True)
      acts = state["intermediates"]["block2"]["conv_a"]["__call__"][0]
      return jnp.take_along_axis(logits, t[:, None], 1).sum(), acts
    grads, acts = jax.grad(score, has_aux=True)(jnp.zeros((2, 8, 8, 8)))
    want = jnp.einsum("nc,nhwc->nhw", grads.mean(axis=(1, 2)), acts)
    got = A.grad_cam(model, x, t, layer="block2/conv_a", relu=False)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    self.assertGreater(float(jnp.abs(want).max()), 0.0)

  def test_bad_input(self):
    model, (x, t) = user_model(), user_inputs()
    with self.assertRaisesRegex(ValueError, r"unknown tap 'block3'.*block2/conv_b"):
      A.grad_cam(model, x, t, layer="block3")

    class Smooth(nn.Module):
      @nn.compact
      def __call__(self, x):
        return nn.Dense(4)(jnp.tanh(nn.Conv(4, (3, 3))(x)).mean(axis=(1, 2)))
    v = Smooth().init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 3)))
    smooth = models.from_flax(Smooth(), v, name="smooth", input_size=(8, 8),
                              min_size=8)
    x8 = x[:, :8, :8]
    self.assertEqual(A.saliency(smooth, x8, t % 4).shape, x8.shape)
    with self.assertRaisesRegex(ValueError, "smooth has no ReLU for guided"):
      A.guided_backprop(smooth, x8, t % 4)
    with self.assertRaisesRegex(ValueError, r"shape \(8,\); the tap is \(2, 8, 8, 8\)"):
      model(x, perturb={"block2": jnp.zeros(8)})
    with self.assertRaisesRegex(ValueError, "flax.linen.Module"):
      models.from_flax(lambda x: x, {}, name="f")


def _custom_relu_net(params, x):
  @jax.custom_vjp
  def my_relu(v):
    return jnp.maximum(v, 0.0)
  my_relu.defvjp(lambda v: (my_relu(v), v), lambda v, g: (g * (v > 0),))
  return my_relu(x.mean(axis=(1, 2)) @ params)


class FunctionTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_saliency_is_jax_grad(self):
    w = jax.random.normal(jax.random.PRNGKey(0), (3, 3, 3, 6))
    d = jax.random.normal(jax.random.PRNGKey(1), (6, 5))
    params = {"w": w, "d": d}

    def apply_fn(p, x):
      h = jax.lax.conv_general_dilated(x, p["w"], (1, 1), "SAME",
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))
      return jnp.maximum(h, 0.0).mean(axis=(1, 2)) @ p["d"]
    model = models.from_function(apply_fn, params, name="plain",
                                 input_size=(12, 12), min_size=4)
    x = jax.random.uniform(jax.random.PRNGKey(2), (2, 12, 12, 3))
    t = jnp.array([1, 4])
    got = self.variant(A.saliency)(model, x, t)
    want = jax.grad(lambda x: jnp.take_along_axis(
        apply_fn(params, x), t[:, None], 1).sum())(x)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    # max(x, 0) is a ReLU for the rewrite: guided differs from vanilla.
    self.assertGreater(rel_err(A.guided_backprop(model, x, t), want), 1e-3)

  def test_taps_fn_grad_cam(self):
    w = jax.random.normal(jax.random.PRNGKey(0), (3, 3, 3, 6))
    d = jax.random.normal(jax.random.PRNGKey(1), (6, 5))

    def taps_fn(p, x):
      h = jax.nn.relu(jax.lax.conv_general_dilated(
          x, p[0], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")))
      return h.mean(axis=(1, 2)) @ p[1], {"features": h}
    model = models.from_function(lambda p, x: taps_fn(p, x)[0], (w, d),
                                 taps_fn=taps_fn, input_size=(12, 12),
                                 min_size=4)
    x = jax.random.uniform(jax.random.PRNGKey(2), (2, 12, 12, 3))
    cam = A.grad_cam(model, x, jnp.array([0, 2]), layer="features", relu=False)
    h = taps_fn((w, d), x)[1]["features"]
    want = jnp.einsum("nc,nhwc->nhw", d[:, jnp.array([0, 2])].T / 144, h)
    np.testing.assert_allclose(cam, want, rtol=1e-5, atol=1e-6)

  def test_rewrite_control_flow_and_limits(self):
    # ReLUs inside scan and cond bodies are rewritten like top-level ones.
    def net(relu, x):
      c, _ = jax.lax.scan(lambda c, a: (relu(c * a - 0.1), None), x, jnp.arange(1., 4.))
      out = jax.lax.cond(True, lambda v: relu(v - 0.2), lambda v: v, c)
      return (out * jnp.cos(jnp.arange(50.))).sum()  # mixed-sign gradients
    x = jax.random.normal(jax.random.PRNGKey(0), (50,))
    grad = lambda f: jax.grad(lambda x: f(x)[0])(x)
    got = grad(lambda x: rewrite.transform(
        lambda x: (net(jax.nn.relu, x), {}), (x,), relu=A.guided_relu))
    np.testing.assert_allclose(got, jax.grad(lambda x: net(A.guided_relu, x))(x))
    self.assertGreater(np.abs(got - jax.grad(lambda x: net(jax.nn.relu, x))(x)).max(), 0)
    with self.assertRaisesRegex(ValueError, "custom_vjp_call"):
      rewrite.transform(lambda p, x: (_custom_relu_net(p, x), {}),
                        (jnp.ones((3, 2)), jnp.ones((1, 4, 4, 3))),
                        relu=A.guided_relu)


# ---------------------------------------------------------------- ResNets


@functools.lru_cache(None)
def resnet_pair(arch="resnet18"):
  """(torchvision net with random weights and non-trivial BN statistics,
  its conversion through `from_flax`)."""
  torch.manual_seed(0)
  net = getattr(torchvision.models, arch)(weights=None).eval()
  with torch.no_grad():
    for m in net.modules():
      if isinstance(m, torch.nn.BatchNorm2d):
        m.running_mean.uniform_(-0.3, 0.3)
        m.running_var.uniform_(0.5, 2.0)
        m.weight.uniform_(0.5, 1.5)
        m.bias.uniform_(-0.2, 0.2)
      if isinstance(m, torch.nn.ReLU):
        m.inplace = False  # Captum's backward hooks need out-of-place ReLUs
  variables = convert_resnet.convert_state_dict(arch, net.state_dict())
  model = resnet.build(arch, jax.tree_util.tree_map(jnp.asarray, variables))
  return net, model


class Normalized(torch.nn.Module):
  """The torch net on [0, 1] NCHW input, normalized as the JAX model does."""

  def __init__(self, net):
    super().__init__()
    self.net = net
    self.register_buffer("mean", torch.tensor(resnet.IMAGENET_MEAN).view(1, 3, 1, 1))
    self.register_buffer("std", torch.tensor(resnet.IMAGENET_STD).view(1, 3, 1, 1))

  def forward(self, x):
    return self.net((x - self.mean) / self.std)


def nchw(x, grad=False):
  return torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy()).requires_grad_(grad)


def nhwc(t):
  return t.detach().numpy().transpose(0, 2, 3, 1)


class ResNetTest(parameterized.TestCase):

  @parameterized.parameters((224, 224), (97, 113))
  def test_logits_and_taps_equal_torchvision(self, h, w):
    net, model = resnet_pair()
    x = jax.random.uniform(jax.random.PRNGKey(h), (1, h, w, 3))
    taps = ("layer1.0.relu:0", "layer2/0/downsample", "layer4")
    logits, acts = jax.jit(lambda x: model(x, taps=taps))(x)
    got = {}

    def keep(name, first=False):
      def hook(module, inputs, out):  # returns None: the output is unchanged
        if not (first and name in got):
          got[name] = out
      return hook
    hooks = [net.layer2[0].downsample.register_forward_hook(
                 keep("layer2/0/downsample")),
             net.layer4.register_forward_hook(keep("layer4")),
             # torchvision reuses one ReLU module per block: call 0 is bn1's.
             net.layer1[0].relu.register_forward_hook(
                 keep("layer1.0.relu:0", first=True))]
    with torch.no_grad():
      ref = Normalized(net)(nchw(x)).numpy()
    for hook in hooks:
      hook.remove()
    np.testing.assert_allclose(logits, ref, atol=1e-4, rtol=0)
    for k in taps:
      np.testing.assert_allclose(acts[k], nhwc(got[k]), atol=1e-4, rtol=0)

  def test_attributions_equal_captum(self):
    net, model = resnet_pair()
    tnet = Normalized(net).eval()
    x = jax.random.uniform(jax.random.PRNGKey(4), (2, 48, 48, 3))
    t = np.array([3, 917], np.int32)
    tt = torch.from_numpy(t).long()
    cases = {
        "saliency": (A.saliency(model, x, t), captum_attr.Saliency(tnet).attribute(
            nchw(x, True), target=tt, abs=False)),
        "guided": (A.guided_backprop(model, x, t),
                   captum_attr.GuidedBackprop(tnet).attribute(nchw(x, True), target=tt)),
        "ig": (A.integrated_gradients(model, x, t, baselines=0.5, steps=4,
                                      method="riemann_trapezoid").attributions,
               captum_attr.IntegratedGradients(tnet).attribute(
                   nchw(x, True), baselines=0.5, target=tt, n_steps=4,
                   method="riemann_trapezoid")),
    }
    for name, (ours, ref) in cases.items():
      self.assertLess(rel_err(ours, nhwc(ref)), 1e-3, name)
    cam = A.grad_cam(model, x, t, layer="layer4", relu=False)
    ref = captum_attr.LayerGradCam(tnet, net.layer4).attribute(nchw(x, True), target=tt)
    self.assertLess(rel_err(cam, ref.detach().numpy()[:, 0]), 1e-3, "grad_cam")

  def test_occlusion_equals_captum(self):
    net, model = resnet_pair()
    x = jax.random.uniform(jax.random.PRNGKey(6), (1, 32, 32, 3))
    t, window, stride = np.array([5], np.int32), 16, 8
    ours = np.asarray(A.occlusion(model, x, t, window=window, stride=stride,
                                  fill=0.5, probabilities=False))
    ref = captum_attr.Occlusion(Normalized(net)).attribute(
        nchw(x), target=torch.from_numpy(t).long(),
        sliding_window_shapes=(3, window, window), strides=(3, stride, stride),
        baselines=0.5).numpy()[:, 0]
    # Captum: per pixel, the mean of f(x) - f(occluded) over covering windows.
    total, count = np.zeros(x.shape[1:3]), np.zeros(x.shape[1:3])
    for i in range(ours.shape[1]):
      for j in range(ours.shape[2]):
        sl = np.s_[i * stride:i * stride + window, j * stride:j * stride + window]
        total[sl] += ours[0, i, j]
        count[sl] += 1
    self.assertLess(rel_err(total / count, ref[0]), 1e-3)

  def test_resnet50(self):
    net = torchvision.models.resnet50(weights=None)
    variables = convert_resnet.convert_state_dict("resnet50", net.state_dict())
    self.assertEqual(resnet.count("resnet50"),
                     sum(p.numel() for p in net.parameters()))
    self.assertEqual(resnet.count("resnet50"), 25_557_032)
    self.assertEqual(resnet.count("resnet18"), 11_689_512)
    flat = models.core.flatten(variables)
    np.testing.assert_array_equal(
        flat["params/layer3/0/downsample/0/kernel"],
        net.layer3[0].downsample[0].weight.detach().numpy().transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(flat["batch_stats/layer4/2/bn3/var"],
                                  net.layer4[2].bn3.running_var.numpy())
    # One forward pass at an odd size (Bottleneck strides, downsample paths).
    model = resnet.build("resnet50", jax.tree_util.tree_map(jnp.asarray, variables))
    x = jax.random.uniform(jax.random.PRNGKey(7), (1, 65, 47, 3))
    with torch.no_grad():
      ref = Normalized(net.eval())(nchw(x)).numpy()
    self.assertLess(rel_err(jax.jit(lambda x: model(x)[0])(x), ref), 1e-5)
    sd = dict(net.state_dict())
    sd["layer9.weight"] = sd.pop("fc.weight")
    with self.assertRaisesRegex(ValueError, r"missing keys \(1\): \['params/fc/"
                                r"kernel'\][\s\S]*unexpected keys \(1\): "
                                r"\['layer9.weight'\]"):
      convert_resnet.convert_state_dict("resnet50", sd)

  def test_checkpoint_round_trip(self):
    net, model = resnet_pair()
    with tempfile.TemporaryDirectory() as tmp:
      path, sd_path = f"{tmp}/r18.safetensors", f"{tmp}/r18.pth"
      torch.save(net.state_dict(), sd_path)
      convert_torchvision.convert("resnet18", path, sd_path)
      loaded = resnet.load("resnet18", path)
      chex.assert_trees_all_equal(loaded.params, model.params)
      self.assertEqual(len(loaded.class_names), 1000)
      # A ResNet-18 file is not a ResNet-50: the key check lists the mismatch.
      with self.assertRaisesRegex(ValueError, r"missing keys \(\d+\): \["
                                  r"'batch_stats/layer1/0/bn3/mean'"):
        resnet.load("resnet50", path)


if __name__ == "__main__":
  absltest.main()
