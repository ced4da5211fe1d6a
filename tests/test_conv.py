"""`models.conv`: values and gradients equal XLA's convolution and its autodiff
for every formulation, kernel size, stride, padding and odd size."""

import os

from absl.testing import parameterized
import chex
import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from unittest import mock

from cnnviz_jax.models import conv as C
from cnnviz_jax.models import winograd

# The plan as a user's process makes it (XLA at -O2): the tests compile at
# -O0 (conftest), where the plan leaves Winograd out.
_AS_AT_O2 = mock.patch.object(winograd, "_optimized", lambda: True)

# Float32 sums of up to a few hundred terms, compared as a fraction of the
# largest reference entry: a reordered summation moves them by ~1e-6.
_RTOL = 2e-5

# (kernel, stride, padding, height, width, batch, in channels, out channels):
# kernels 1/3/5/11, strides 1/2/4, paddings 0/1/2, odd and even sizes (sizes
# where the last window does not reach the border), batch 1 and > 1, 3
# input channels (the pad-to-4 forward) and more.
_CASES = (
    (1, 1, 0, 7, 5, 2, 5, 4),
    (1, 2, 0, 9, 8, 1, 3, 6),
    (3, 1, 1, 9, 7, 1, 3, 8),
    (3, 1, 0, 6, 5, 3, 4, 5),
    (3, 2, 1, 9, 10, 2, 6, 7),
    (3, 2, 0, 8, 9, 2, 3, 4),
    (3, 4, 2, 13, 11, 1, 5, 3),
    (5, 1, 2, 11, 9, 2, 3, 6),
    (5, 2, 2, 10, 13, 3, 2, 5),
    (5, 4, 1, 15, 12, 2, 4, 4),
    (11, 4, 2, 35, 31, 2, 3, 8),
    (11, 1, 0, 12, 11, 1, 2, 3),
    (7, 1, 3, 12, 11, 2, 6, 3),   # "split": 7 is no multiple of 3
    (9, 1, 0, 14, 13, 1, 5, 2),   # "split" unpadded, Johnson's output layer
)


def _named(cases):
  return [("_".join(map(str, c)),) + c for c in cases]


def _reference(x, kernel, bias, stride, padding):
  y = lax.conv_general_dilated(x, kernel, (stride, stride),
                               ((padding, padding), (padding, padding)),
                               dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return y + bias


def _inputs(k, n, h, w, cin, cout, seed=0):
  kx, kk, kb = jax.random.split(jax.random.PRNGKey(seed), 3)
  return (jax.random.normal(kx, (n, h, w, cin)),
          jax.random.normal(kk, (k, k, cin, cout)) / k,
          jax.random.normal(kb, (cout,)))


def _one_at_a_time():
  """Each formulation once, the other two parts XLA's: (forward, input_grad,
  weight_grad) name triples."""
  return ([(f, "xla", "xla") for f in C.FORWARD] +
          [("xla", i, "xla") for i in C.INPUT_GRAD if i != "xla"] +
          [("xla", "xla", w) for w in C.WEIGHT_GRAD if w != "xla"])


def _assert_close(test, got, want, what):
  got, want = np.asarray(got), np.asarray(want)
  test.assertEqual(got.shape, want.shape, what)
  scale = float(np.abs(want).max()) or 1.0
  err = float(np.abs(got - want).max()) / scale
  test.assertLess(err, _RTOL, f"{what}: max error {err:.2e} of {scale:.2e}")


class Conv2dTest(chex.TestCase, parameterized.TestCase):

  def _check(self, conv, k, s, p, h, w, n, cin, cout):
    x, kernel, bias = _inputs(k, n, h, w, cin, cout, seed=k * 31 + s * 7 + p)
    want, want_vjp = jax.vjp(
        lambda x, k_, b: _reference(x, k_, b, s, p), x, kernel, bias)
    cot = jax.random.normal(jax.random.PRNGKey(5), want.shape)

    def value_and_grads(x, kernel, bias, cot):
      y, vjp = jax.vjp(conv, x, kernel, bias)
      return (y,) + vjp(cot)

    got = self.variant(value_and_grads)(x, kernel, bias, cot)
    for name, g, r in zip(("y", "d x", "d kernel", "d bias"), got,
                          (want,) + want_vjp(cot)):
      _assert_close(self, g, r, name)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*_named(_CASES))
  def test_matches_xla(self, k, s, p, h, w, n, cin, cout):
    self._check(lambda x, k_, b: C.conv2d(x, k_, b, stride=s, padding=p),
                k, s, p, h, w, n, cin, cout)

  @chex.variants(with_jit=True)
  @parameterized.named_parameters(*_named(_CASES[1::2]))
  def test_every_formulation_matches_xla(self, k, s, p, h, w, n, cin, cout):
    for methods in _one_at_a_time():
      with self.subTest(methods=methods):
        self._check(lambda x, k_, b: C.conv2d(x, k_, b, stride=s, padding=p,
                                              _methods=methods),
                    k, s, p, h, w, n, cin, cout)

  def test_asymmetric_padding_and_stride(self):
    x, kernel, bias = _inputs(3, 2, 11, 9, 4, 5)
    kernel = kernel[:, :2]  # a 3x2 kernel
    pads, stride = ((2, 0), (1, 3)), (2, 3)

    def ref(x, k_):
      return lax.conv_general_dilated(x, k_, stride, pads, dimension_numbers=(
          "NHWC", "HWIO", "NHWC"))
    for methods in _one_at_a_time():
      conv = lambda x, k_: C.conv2d(x, k_, stride=stride, padding=pads,
                                    _methods=methods)
      y, vjp = jax.vjp(conv, x, kernel)
      y0, vjp0 = jax.vjp(ref, x, kernel)
      for g, r in zip((y,) + vjp(y0), (y0,) + vjp0(y0)):
        _assert_close(self, g, r, str(methods))

  def test_paddings_wider_than_the_kernel(self):
    # XLA:CPU's own input gradient (jax 0.10.2) returned garbage (up to 1e38)
    # where a padding reaches the kernel size on both axes; the reference
    # here pads x first, whose transpose is a slice.
    for k, pads, stride, cin in ((2, ((2, 0), (2, 1)), 1, 1),
                                 (2, ((3, 0), (2, 3)), 1, 4),
                                 (3, ((3, 1), (3, 1)), 1, 3),
                                 (3, ((3, 3), (4, 0)), 2, 5),
                                 (1, ((1, 2), (2, 1)), 1, 6)):
      x, kernel, _ = _inputs(k, 2, 13, 11, cin, 4)

      def ref(x, k_):
        xp = jnp.pad(x, ((0, 0),) + pads + ((0, 0),))
        return lax.conv_general_dilated(xp, k_, (stride,) * 2, ((0, 0), (0, 0)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))
      y0, vjp0 = jax.vjp(ref, x, kernel)
      for methods in [None] + _one_at_a_time():
        conv = lambda x, k_: C.conv2d(x, k_, stride=stride, padding=pads,
                                      _methods=methods)
        y, vjp = jax.vjp(jax.jit(conv), x, kernel)
        for g, r in zip((y,) + vjp(y0), (y0,) + vjp0(y0)):
          _assert_close(self, g, r, f"k={k} pads={pads} {methods}")

  def test_stride_one_rectangular_kernels(self):
    # Even and one-wide kernels: "phases" taps that fall outside the kernel
    # at odd output sizes, "split" sub-kernels that overhang.
    for kh, kw, pads in ((1, 1, ((0, 0), (0, 0))), (3, 2, ((2, 0), (1, 3))),
                         (2, 5, ((0, 1), (0, 0))), (5, 6, ((1, 1), (2, 2)))):
      x, kernel, _ = _inputs(max(kh, kw), 2, 10, 13, 3, 4, seed=kh * 7 + kw)
      kernel = kernel[:kh, :kw]

      def ref(x, k_, pads=pads):
        return lax.conv_general_dilated(x, k_, (1, 1), pads, dimension_numbers=(
            "NHWC", "HWIO", "NHWC"))
      for methods in _one_at_a_time():
        conv = lambda x, k_, m=methods, pads=pads: C.conv2d(
            x, k_, padding=pads, _methods=m)
        y, vjp = jax.vjp(conv, x, kernel)
        y0, vjp0 = jax.vjp(ref, x, kernel)
        for g, r in zip((y,) + vjp(y0), (y0,) + vjp0(y0)):
          _assert_close(self, g, r, str((kh, kw, methods)))

  def test_winograd_paddings_and_odd_sizes(self):
    # Every padding up to 3 per side (the input gradient takes Winograd's
    # path up to 2), odd and even sizes, sizes below one 2x2 block.
    for h, w, pads in ((7, 9, ((1, 1), (1, 1))), (6, 5, ((0, 0), (2, 0))),
                       (4, 3, ((2, 2), (0, 1))), (5, 8, ((3, 1), (1, 3))),
                       (3, 3, ((0, 0), (0, 0)))):
      x, kernel, _ = _inputs(3, 2, h, w, 5, 6, seed=h * 10 + w)
      ref = lambda x, k_, pads=pads: lax.conv_general_dilated(
          x, k_, (1, 1), pads, dimension_numbers=("NHWC", "HWIO", "NHWC"))
      conv = lambda x, k_, pads=pads: C.conv2d(
          x, k_, padding=pads, _methods=("winograd", "winograd", "xla"))
      y, vjp = jax.vjp(conv, x, kernel)
      y0, vjp0 = jax.vjp(ref, x, kernel)
      for name, g, r in zip(("y", "dx", "dk"), (y,) + vjp(y0), (y0,) + vjp0(y0)):
        _assert_close(self, g, r, f"{name} {(h, w, pads)}")

  @_AS_AT_O2
  def test_plan_picks_winograd_for_deep_layers(self):
    for x_shape, k_shape, want in (
        ((4, 56, 56, 256), (3, 3, 256, 256), "winograd"),
        ((128, 8, 8, 256), (3, 3, 256, 384), "winograd"),
        ((1, 8, 8, 256), (3, 3, 256, 256), "xla"),     # too little work
        ((16, 224, 224, 64), (3, 3, 64, 64), "xla"),   # memory-bound there
        ((4, 56, 56, 256), (5, 5, 256, 256), "xla")):
      plan = C.plan(x_shape, k_shape, 1, k_shape[0] // 2)
      self.assertEqual((plan["forward"], plan["input_grad"], plan["weight_grad"]),
                       (want,) * 3, str((x_shape, k_shape)))
    self.assertEqual(C.plan((4, 56, 56, 256), (3, 3, 256, 256), 2, 1)["forward"],
                     "xla")
    every = dict.fromkeys(("forward", "input_grad", "weight_grad"), "winograd")
    with winograd.use(False):
      self.assertEqual(C.plan((4, 56, 56, 256), (3, 3, 256, 256), 1, 1),
                       dict(forward="xla", input_grad="xla", weight_grad="xla"))
    self.assertEqual(C.plan((4, 56, 56, 256), (3, 3, 256, 256), 1, 1), every)
    with winograd.use(True, min_work=1 << 20):   # small layers too
      self.assertEqual(C.plan((1, 8, 8, 256), (3, 3, 256, 256), 1, 1), every)

  def test_winograd_left_out_unoptimized(self):
    with mock.patch.dict(os.environ, XLA_FLAGS="--xla_backend_optimization_level=0"):
      self.assertFalse(winograd._optimized())
      self.assertEqual(C.plan((4, 56, 56, 256), (3, 3, 256, 256), 1, 1)["forward"],
                       "xla")
    with mock.patch.dict(os.environ, XLA_FLAGS="--xla_backend_optimization_level=2"):
      self.assertTrue(winograd._optimized())

  @chex.variants(with_jit=True, without_jit=True)
  def test_vmap(self):
    # Sweeps vmap the whole model: over images, and over kernels too.
    x, kernel, bias = _inputs(3, 2, 9, 9, 3, 4)
    xs = jnp.stack([x, 2 * x, -x])
    kernels = jnp.stack([kernel, kernel + 1, -kernel])

    def loss(conv, x, k_):
      return (conv(x, k_, bias, 2, 1) ** 2).sum()

    ours = lambda x, k_, b, s, p: C.conv2d(x, k_, b, stride=s, padding=p)
    grad = lambda conv: jax.vmap(jax.grad(lambda x, k_: loss(conv, x, k_),
                                          argnums=(0, 1)))
    got = self.variant(grad(ours))(xs, kernels)
    want = grad(_reference)(xs, kernels)
    for g, r in zip(got, want):
      _assert_close(self, g, r, "vmap grads")

  def test_only_requested_gradients(self):
    x, kernel, _ = _inputs(3, 2, 8, 8, 3, 4)
    f = lambda x, k_: (C.conv2d(x, k_, padding=1) ** 2).sum()
    r = lambda x, k_: (_reference(x, k_, 0.0, 1, 1) ** 2).sum()
    _assert_close(self, jax.grad(f)(x, kernel), jax.grad(r)(x, kernel), "dx")
    _assert_close(self, jax.grad(f, 1)(x, kernel), jax.grad(r, 1)(x, kernel),
                  "dkernel")

  def test_checks_shapes(self):
    with self.assertRaisesRegex(ValueError, "channels"):
      C.conv2d(jnp.zeros((1, 5, 5, 3)), jnp.zeros((3, 3, 4, 2)))
    with self.assertRaisesRegex(ValueError, "padding"):
      C.conv2d(jnp.zeros((1, 5, 5, 3)), jnp.zeros((3, 3, 3, 2)), padding="SAME")

  def test_plan_names_are_registered(self):
    for shape in ((4, 224, 224, 3), (4, 112, 112, 64), (256, 8, 8, 256)):
      for k, s in ((3, 1), (9, 1), (3, 2), (11, 4)):
        plan = C.plan(shape, (k, k, shape[-1], 64), s, k // 2)
        self.assertIn(plan["forward"], C.FORWARD)
        self.assertIn(plan["input_grad"], C.INPUT_GRAD)
        self.assertIn(plan["weight_grad"], C.WEIGHT_GRAD)


  @_AS_AT_O2
  def test_plan_for_the_style_network(self):
    # The formulations the stylizer's layers rely on (reflection padding,
    # then unpadded convolutions) at 256x256.
    cases = (((1, 264, 264, 3), (9, 9, 3, 16), 1, "phases"),
             ((1, 264, 264, 16), (9, 9, 16, 3), 1, "split"),
             ((1, 258, 258, 32), (3, 3, 32, 16), 1, "crop"),
             ((1, 258, 258, 16), (3, 3, 16, 32), 2, "xla"),
             ((1, 66, 66, 64), (3, 3, 64, 64), 1, "xla"),  # 2**24 < MIN_WORK
             ((4, 66, 66, 64), (3, 3, 64, 64), 1, "winograd"),  # a training batch
             ((1, 258, 258, 64), (3, 3, 64, 64), 1, "winograd"),  # at 1024x1024
             ((4, 226, 226, 64), (3, 3, 64, 64), 1, "xla"))  # VGG16 conv1_2
    for x_shape, k_shape, s, want in cases:
      self.assertEqual(C.plan(x_shape, k_shape, s, 0)["forward"], want,
                       str((x_shape, k_shape, s)))


  def test_weight_grad_plan_for_rgb_and_strided_layers(self):
    # The formulations the eighth session's measurements chose (conv_plan).
    cases = (((128, 32, 32, 3), (3, 3, 3, 64), 1, 1, "im2col_t"),  # CIFAR VGG
             ((4, 224, 224, 3), (3, 3, 3, 64), 1, 1, "transposed"),  # VGG16
             ((4, 264, 264, 3), (9, 9, 3, 32), 1, 0, "transposed"),  # Johnson
             ((4, 227, 227, 3), (11, 11, 3, 64), 4, 2, "xla"),  # AlexNet
             ((4, 258, 258, 32), (3, 3, 32, 64), 2, 0, "rows"))
    for x_shape, k_shape, s, p, want in cases:
      self.assertEqual(C.plan(x_shape, k_shape, s, p)["weight_grad"], want,
                       str((x_shape, k_shape, s)))


class ConvModuleTest(parameterized.TestCase):

  def test_same_params_as_flax_conv(self):
    # Same names, shapes and initial values as nn.Conv: checkpoints and the
    # torchvision conversion do not change.
    x = jnp.ones((2, 9, 9, 3))
    init = C.default_kernel_init
    ours = C.Conv(8, 3, strides=2, padding=1)
    theirs = nn.Conv(8, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)),
                     kernel_init=init)
    key = jax.random.PRNGKey(0)
    p_ours, p_theirs = ours.init(key, x), theirs.init(key, x)
    chex.assert_trees_all_equal(p_ours, p_theirs)
    _assert_close(self, ours.apply(p_ours, x), theirs.apply(p_theirs, x), "y")


def test_shipped_model_gradients_with_winograd_planned():
  """The shipped CIFAR VGG at batch 32 as a user's process plans it (its
  128- and 256-channel layers on Winograd's three passes) against the same
  with Winograd left out: logits, input and parameter gradients."""
  from conftest import cifar_model
  model = cifar_model()
  x = jax.random.uniform(jax.random.PRNGKey(3), (32, 32, 32, 3))

  def grads():
    loss = lambda p, x: jnp.sum(jax.nn.log_softmax(model.apply(p, x)[0])[:, 3])
    return jax.jit(jax.value_and_grad(loss, (0, 1)))(model.params, x)

  with _AS_AT_O2:
    plans = [C.plan((32, 16, 16, 128), (3, 3, 128, 128), 1, 1),
             C.plan((32, 8, 8, 256), (3, 3, 256, 256), 1, 1)]
    got = grads()
  assert all(set(p.values()) == {"winograd"} for p in plans), plans
  with winograd.use(False):
    want = grads()
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    scale = float(jnp.max(jnp.abs(w)))
    np.testing.assert_allclose(g, w, rtol=0, atol=_RTOL * scale + 1e-12)
