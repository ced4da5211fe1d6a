"""`core.max_pool`: the window == stride `custom_vjp` gives, bit for bit, the
values and gradients of the former reshape-and-select formulation (kept below
as the reference): first tied maximum, NaN propagation, floor mode, under jit,
vmap and in other dtypes; gradients agree with torch's max pool."""

from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnviz_jax.models import core
from cnnviz_jax.models import rewrite


def _reference(x, window, stride):
  """The formulation `core.max_pool` had before its `custom_vjp` (autodiff of
  a reshape, a max and a "first maximum in row-major order" selection)."""
  n, h, w, c = x.shape
  if window == stride:
    ho, wo = h // window, w // window
    x = x[:, :ho * window, :wo * window].reshape(n, ho, window, wo, window, c)
    top = jax.lax.stop_gradient(x.max(axis=(2, 4), keepdims=True))
    order = (np.arange(window)[:, None, None] * window +
             np.arange(window)[None, None, :]).reshape(1, 1, window, 1, window, 1)
    is_top = (x == top) | jnp.isnan(x)
    first = jnp.where(is_top, order, window * window).min(axis=(2, 4),
                                                          keepdims=True)
    return jnp.where(order == first, x, 0.0).sum(axis=(2, 4))
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max,
                               (1, window, window, 1), (1, stride, stride, 1),
                               "VALID")


def _bits(a):
  a = np.asarray(a)
  return a.view({2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize])


def _assert_bitwise(a, b):
  assert np.asarray(a).dtype == np.asarray(b).dtype
  assert np.shape(a) == np.shape(b)
  np.testing.assert_array_equal(_bits(a), _bits(b))


def _hard_input(shape, seed=0, dtype=np.float32):
  """Few distinct values (many ties), NaNs (some windows with two), signed
  zeros and infinities."""
  rng = np.random.default_rng(seed)
  x = rng.integers(-2, 3, size=shape).astype(np.float32)
  for value, p in ((np.nan, 0.08), (-0.0, 0.15), (0.0, 0.05), (np.inf, 0.03),
                   (-np.inf, 0.03)):
    x[rng.random(shape) < p] = value
  bits = x.view(np.uint32)  # NaNs with distinct payloads and signs
  nan = np.isnan(x)
  bits[nan] = 0x7FC00000 | rng.integers(1, 1 << 20, size=nan.sum(),
                                        dtype=np.uint32)
  bits[nan & (rng.random(shape) < 0.5)] |= 0x80000000
  return jnp.asarray(x.astype(dtype))


def _cotangent(shape, seed=1, dtype=np.float32):
  rng = np.random.default_rng(seed)
  g = rng.normal(size=shape).astype(np.float32)
  g[rng.random(shape) < 0.1] = -0.0
  return jnp.asarray(g.astype(dtype))


def _value_and_vjp(fn, window, stride):
  def run(x, g):
    y, vjp = jax.vjp(lambda x: fn(x, window, stride), x)
    return y, vjp(g)[0]
  return run


# (window, stride, batch, height, width, channels): even sizes, odd sizes
# (floor mode crops the last row/column), windows 1..4, batch 1 and > 1.
_CASES = (
    (2, 2, 1, 2, 2, 1),
    (2, 2, 3, 8, 6, 4),
    (2, 2, 2, 7, 9, 3),
    (2, 2, 1, 5, 2, 2),
    (3, 3, 2, 9, 11, 3),
    (3, 3, 1, 10, 8, 2),
    (4, 4, 2, 9, 13, 2),
    (1, 1, 2, 3, 4, 2),
    (3, 2, 2, 9, 8, 3),   # window != stride: reduce_window, as before
)


class MaxPoolTest(chex.TestCase, parameterized.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(*_CASES)
  def test_bitwise_as_reference(self, window, stride, n, h, w, c):
    x = _hard_input((n, h, w, c), seed=h * w + window)
    ref_y, _ = jax.vjp(lambda x: _reference(x, window, stride), x)
    g = _cotangent(ref_y.shape)
    want = _value_and_vjp(_reference, window, stride)(x, g)
    got = self.variant(_value_and_vjp(core.max_pool, window, stride))(x, g)
    _assert_bitwise(got[0], want[0])
    _assert_bitwise(got[1], want[1])
    # The inputs do exercise NaN windows (all but the smallest cases).
    assert np.isnan(np.asarray(got[0])).any() or got[0].size < 8

  @chex.variants(with_jit=True, without_jit=True)
  def test_ties_go_to_the_first_maximum_and_nan_wins(self):
    x = jnp.array([[1., 1., 0., np.nan, 3., 3.],
                   [1., 1., np.nan, np.nan, 3., 2.],
                   [-0., 0., -np.inf, -np.inf, 5., 5.],
                   [0., -0., -np.inf, -np.inf, 5., 4.]])[None, :, :, None]
    y, dx = self.variant(
        _value_and_vjp(core.max_pool, 2, 2))(x, jnp.full((1, 2, 3, 1), 7.))
    np.testing.assert_array_equal(y[0, :, :, 0], [[1., np.nan, 3.],
                                                  [0., -np.inf, 5.]])
    assert not np.signbit(y[0, 1, 0, 0])  # +0.0, as the former formulation
    np.testing.assert_array_equal(dx[0, :, :, 0], [[7, 0, 0, 7, 7, 0],
                                                   [0, 0, 0, 0, 0, 0],
                                                   [7, 0, 7, 0, 7, 0],
                                                   [0, 0, 0, 0, 0, 0]])

  @parameterized.parameters(jnp.bfloat16, jnp.float16)
  def test_other_float_dtypes(self, dtype):
    x = _hard_input((2, 7, 6, 3), dtype=dtype)
    g = _cotangent((2, 3, 3, 3), dtype=dtype)
    for jit in (False, True):
      wrap = jax.jit if jit else (lambda f: f)
      got = wrap(_value_and_vjp(core.max_pool, 2, 2))(x, g)
      want = _value_and_vjp(_reference, 2, 2)(x, g)
      _assert_bitwise(got[0], want[0])
      _assert_bitwise(got[1], want[1])

  @chex.variants(with_jit=True, without_jit=True)
  def test_vmap(self):
    # An extra leading axis mapped over, for the values and per-example
    # gradients (the gradient-of-sum under vmap, as SmoothGrad batches do).
    x = _hard_input((3, 2, 7, 5, 2), seed=4)
    w = _cotangent((3, 2, 3, 2, 2), seed=5)

    def per_example(fn):
      def f(x, w):
        return jax.value_and_grad(lambda x: (fn(x, 2, 2) * w).sum())(x)
      return jax.vmap(f)

    got = self.variant(per_example(core.max_pool))(x, w)
    want = per_example(_reference)(x, w)
    loop = [jax.grad(lambda x: (core.max_pool(x, 2, 2) * w[i]).sum())(x[i])
            for i in range(3)]
    _assert_bitwise(got[1], want[1])
    _assert_bitwise(got[1], jnp.stack(loop))
    np.testing.assert_array_equal(got[0], want[0])  # sums: NaN or equal

  def test_no_relu_inside_for_the_program_rewrites(self):
    # Guided backprop / deconvnet rewrite every max(x, 0) of a traced program
    # and refuse ReLUs inside custom_vjp functions: max_pool must hold none.
    fn = lambda x: core.max_pool(jax.nn.relu(x), 2, 2)
    closed = jax.make_jaxpr(fn)(jnp.ones((1, 4, 4, 2)))
    assert rewrite.survey(closed.jaxpr) == (1, [])

  @parameterized.parameters((2, 2, 3, 8, 10, 4), (2, 2, 2, 9, 7, 3),
                            (3, 3, 2, 10, 9, 2), (3, 2, 1, 9, 9, 2))
  def test_gradients_as_torch(self, window, stride, n, h, w, c):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(window * h)
    x = rng.integers(-2, 3, size=(n, h, w, c)).astype(np.float32)  # ties
    if window == stride:
      # Single NaNs (torch takes the last of several NaNs in one window, the
      # former formulation and this one the first). Not for overlapping
      # windows: there XLA's reduce_window gradient (select_and_scatter)
      # sends a NaN window's gradient to its largest non-NaN entry.
      x.reshape(-1)[rng.choice(x.size, 3, replace=False)] = np.nan
    y, vjp = jax.vjp(lambda x: core.max_pool(x, window, stride), jnp.asarray(x))
    g = rng.normal(size=y.shape).astype(np.float32)
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_(True)
    yt = torch.nn.functional.max_pool2d(xt, window, stride)
    yt.backward(torch.from_numpy(g.transpose(0, 3, 1, 2).copy()))
    np.testing.assert_array_equal(y, yt.detach().numpy().transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(vjp(jnp.asarray(g))[0],
                                  xt.grad.numpy().transpose(0, 2, 3, 1))
