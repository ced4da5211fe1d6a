"""The CPU formulations of `conv.conv2d` and the rules that choose them
from static shapes (`plan`); see `conv`'s module docstring. Each formulation
takes static `stride`, `pads` and returns what XLA's convolution (forward) or
its transpose (gradients) would, up to float rounding."""

from typing import Callable, Sequence, Union

import jax
from jax import lax
import jax.numpy as jnp

from cnnviz_jax.models import winograd

Array = jax.Array
IntPair = Union[int, Sequence[int]]
Padding = Union[int, Sequence[int], Sequence[Sequence[int]]]

_DN = ("NHWC", "HWIO", "NHWC")

# --------------------------------------------------------------------------
# Static geometry.

def _pair(v: IntPair, name: str) -> tuple[int, int]:
  v = (v, v) if isinstance(v, int) else tuple(int(u) for u in v)
  if len(v) != 2:
    raise ValueError(f"{name} must be an int or a pair; got {v!r}.")
  return v


def _pads(padding: Padding) -> tuple[tuple[int, int], tuple[int, int]]:
  """int p, (ph, pw) or ((top, bottom), (left, right)) -> the last form."""
  if isinstance(padding, str):
    raise ValueError("padding must be explicit pixels (int, (ph, pw) or "
                     f"((top, bottom), (left, right))); got {padding!r}.")
  if isinstance(padding, int):
    return ((padding, padding), (padding, padding))
  padding = tuple(padding)
  if len(padding) != 2:
    raise ValueError(f"padding must describe 2 dimensions; got {padding!r}.")
  return tuple((int(p), int(p)) if isinstance(p, int) else
               tuple(int(q) for q in p) for p in padding)


def _out_hw(x_shape, kernel_shape, stride, pads) -> tuple[int, int]:
  return tuple((n + lo + hi - k) // s + 1 for n, k, s, (lo, hi) in
               zip(x_shape[1:3], kernel_shape[:2], stride, pads))


def _pad_input(x: Array, pads) -> Array:
  return jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))


def _views(xp: Array, kernel_hw, stride, out_hw, rows) -> list[Array]:
  """The padded input seen by each kernel tap of `rows`: `[N, Ho, Wo, C]` each
  (row-major over the taps)."""
  (_, kw), (sh, sw), (ho, wo) = kernel_hw, stride, out_hw
  return [xp[:, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
          for i in rows for j in range(kw)]


# --------------------------------------------------------------------------
# Formulations (see the module docstring).

def _xla_forward(x, kernel, *, stride, pads):
  return lax.conv_general_dilated(x, kernel, stride, pads, dimension_numbers=_DN)


def _pad4_forward(x, kernel, *, stride, pads):
  # YNNPACK ran the 9x9 3->32 layer at 256x256 (Johnson et al.'s first
  # layer) 3.9x faster with the 3 input channels zero-padded to 4; zero
  # channels add exact zeros, so values are unchanged.
  extra = -x.shape[-1] % 4  # up to a multiple of 4
  x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, extra)))
  kernel = jnp.pad(kernel, ((0, 0), (0, 0), (0, extra), (0, 0)))
  return _xla_forward(x, kernel, stride=stride, pads=pads)


def _crop_forward(x, kernel, *, stride, pads):
  """A stride-1 convolution with at least one pixel of zero padding on every
  side, its outer ring cropped: XLA:CPU (jax 0.10.2) ran unpadded ("VALID")
  stride-1 convolutions on large maps about 10x slower than padded ones
  (3x3 32->16 at 256x256: 39.4 ms vs 3.9 ms; 9x9 16->3 at 256 via "split":
  26.1 ms vs 4.7 ms), while the extra ring costs a few per cent."""
  if max(stride) > 1:  # a ring of padding would move the strided grid
    return _xla_forward(x, kernel, stride=stride, pads=pads)
  grow = tuple((1 if lo < 1 else 0, 1 if hi < 1 else 0) for lo, hi in pads)
  y = _xla_forward(x, kernel, stride=stride,
                   pads=tuple((lo + a, hi + b) for (lo, hi), (a, b) in zip(pads, grow)))
  return y[:, grow[0][0]:y.shape[1] - grow[0][1], grow[1][0]:y.shape[2] - grow[1][1]]


_SPLIT = 3  # "split" sub-kernel size


def _split_forward(x, kernel, *, stride, pads):
  """A large kernel with few outputs as one 3x3 convolution with many.

  The kh x kw kernel, zero-padded to multiples of 3, is a q x q' grid of 3x3
  sub-kernels; one 3x3 convolution computes every sub-kernel's response
  (q*q'*O outputs), and the output is the sum of those responses, each
  shifted by its sub-kernel's offset. The same products and sums in another
  order. Stride 1 only (else XLA's own). For 9x9 16->3 (Johnson's output layer) at 256x256 XLA:CPU took
  11.5 ms its own way, 4.7 ms this way (eager PyTorch: 6.1 ms); 45 -> 17 ms
  at 512, 176 -> 85 ms at 1024. Not for many outputs (9x9 3->16: 4.0 -> 22 ms).
  """
  if max(stride) > 1:
    return _xla_forward(x, kernel, stride=stride, pads=pads)
  kh, kw, c, o = kernel.shape
  m = _SPLIT
  qh, qw = -(-kh // m), -(-kw // m)
  # Zero taps at the bottom/right reach zero rows/columns appended below.
  kernel = jnp.pad(kernel, ((0, qh * m - kh), (0, qw * m - kw), (0, 0), (0, 0)))
  xp = _pad_input(x, pads)
  ho, wo = xp.shape[1] - kh + 1, xp.shape[2] - kw + 1
  xp = jnp.pad(xp, ((0, 0), (0, qh * m - kh), (0, qw * m - kw), (0, 0)))
  subs = kernel.reshape(qh, m, qw, m, c, o).transpose(1, 3, 4, 0, 2, 5)
  z = _crop_forward(xp, subs.reshape(m, m, c, qh * qw * o), stride=(1, 1),
                    pads=((0, 0), (0, 0)))
  z = z.reshape(*z.shape[:3], qh, qw, o)
  return sum(z[:, m * a:m * a + ho, m * b:m * b + wo, a, b]
             for a in range(qh) for b in range(qw))


def _s2d_forward(x, kernel, *, stride, pads):
  """A stride-s convolution as a stride-1 one on the space-to-depth input.

  Input rows s*i + p (p < s) become channel block p of row i, and kernel
  taps s*u + p (zero-padded to a multiple of s) the matching input channels
  of tap u: a ceil(k/s)-sized stride-1 convolution over s*s*C channels, the
  same products plus some with zero taps. 3x3 stride 2 at 256x256 16->32
  (Johnson's first downsampling layer) took 1.86 ms XLA's own way and 1.11
  ms this way, 38.5 -> 24.5 ms at 512; but 128x128 32->64 1.07 -> 1.81 ms.
  """
  kh, kw, c, o = kernel.shape
  (sh, sw), (ho, wo) = stride, _out_hw(x.shape, kernel.shape, stride, pads)
  qh, qw = -(-kh // sh), -(-kw // sw)
  rows, cols = sh * (ho - 1 + qh), sw * (wo - 1 + qw)
  xp = _pad_input(x, pads)[:, :rows, :cols]
  xp = jnp.pad(xp, ((0, 0), (0, rows - xp.shape[1]), (0, cols - xp.shape[2]), (0, 0)))
  n = x.shape[0]
  xs = xp.reshape(n, rows // sh, sh, cols // sw, sw, c).transpose(0, 1, 3, 2, 4, 5)
  k = jnp.pad(kernel, ((0, qh * sh - kh), (0, qw * sw - kw), (0, 0), (0, 0)))
  k = k.reshape(qh, sh, qw, sw, c, o).transpose(0, 2, 1, 3, 4, 5)
  return _forward_by_rule(xs.reshape(n, rows // sh, cols // sw, sh * sw * c),
                          k.reshape(qh, qw, sh * sw * c, o))


def _phases_forward(x, kernel, *, stride, pads):
  """A stride-1 convolution from few channels, 2x2 output block by block:
  output pixel `(2i + a, 2j + b)` is a `ceil((k + 1) / 2)`-sized stride-1
  convolution of the 2x2 space-to-depth input (4C channels) at `(i, j)`
  with phase `(a, b)`'s taps (zero where a tap falls outside the kernel),
  so one convolution to 4*O channels computes the four phases, and a
  depth-to-space pass interleaves them: ~1.2x the multiply-adds (9x9: 5x5
  taps over 4 phases vs 81) on a map a quarter the size with 4x the
  channels. Stride 1 only (else XLA's own). Johnson's 9x9 3->16 first
  layer, batch 1, ms, column tiles (`_tiles_forward`) -> this: 1024x1024
  51.3 -> 33.5, 256x256 3.09 -> 2.33."""
  if max(stride) > 1:
    return _xla_forward(x, kernel, stride=stride, pads=pads)
  xp = _pad_input(x, pads)
  n, h, w, c = xp.shape
  kh, kw, _, o = kernel.shape
  ho, wo = h - kh + 1, w - kw + 1
  h2, w2 = -(-ho // 2), -(-wo // 2)          # output blocks
  qh, qw = -(-(kh + 1) // 2), -(-(kw + 1) // 2)  # taps per phase
  rows, cols = 2 * (h2 + qh - 1), 2 * (w2 + qw - 1)
  xp = jnp.pad(xp, ((0, 0), (0, max(0, rows - h)), (0, max(0, cols - w)),
                    (0, 0)))[:, :rows, :cols]
  xs = xp.reshape(n, rows // 2, 2, cols // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
  # Phase (a, b) reads kernel tap (2U + p - a, 2V + q - b) at block offset
  # (U, V) and sub-pixel (p, q); one zero row/column on each side of the
  # kernel supplies the taps outside it.
  kp = jnp.pad(kernel, ((1, 2 * qh - kh), (1, 2 * qw - kw), (0, 0), (0, 0)))
  subs = [kp[1 - a:1 - a + 2 * qh, 1 - b:1 - b + 2 * qw]
          .reshape(qh, 2, qw, 2, c, o).transpose(0, 2, 1, 3, 4, 5)
          .reshape(qh, qw, 4 * c, o) for a in range(2) for b in range(2)]
  y = _xla_forward(xs.reshape(n, rows // 2, cols // 2, 4 * c),
                   jnp.stack(subs, axis=-2).reshape(qh, qw, 4 * c, 4 * o),
                   stride=(1, 1), pads=((0, 0), (0, 0)))
  y = y.reshape(n, h2, w2, 2, 2, o).transpose(0, 1, 3, 2, 4, 5)
  return y.reshape(n, 2 * h2, 2 * w2, o)[:, :ho, :wo]


def _winograd_forward(x, kernel, *, stride, pads):
  """A stride-1 3x3 convolution by Winograd's F(2x2, 3x3) (`winograd`);
  others XLA's own."""
  if max(stride) > 1 or kernel.shape[:2] != (3, 3):
    return _xla_forward(x, kernel, stride=stride, pads=pads)
  return winograd.conv3x3(x, kernel, pads)


FORWARD: dict[str, Callable] = {"xla": _xla_forward, "pad4": _pad4_forward,
                                "crop": _crop_forward, "split": _split_forward,
                                "s2d": _s2d_forward, "phases": _phases_forward,
                                "winograd": _winograd_forward}


def _forward_by_rule(x, kernel):
  """An unpadded stride-1 convolution by the formulation `plan` picks."""
  name = plan(x.shape, kernel.shape)["forward"]
  return FORWARD[name](x, kernel, stride=(1, 1), pads=((0, 0), (0, 0)))


def _xla_input_grad(kernel, g, *, x_shape, stride, pads):
  # XLA:CPU (jax 0.10.2) returned garbage input gradients (up to 1e38) where
  # a padding exceeds kernel - 1 (its transpose pads negatively), e.g. 2x2,
  # padding ((2, 0), (2, 1)): such paddings are applied to x explicitly.
  if any(p >= k for k, pair in zip(kernel.shape[:2], pads) for p in pair):
    (pt, pb), (pl, pr) = pads
    n, h, w, c = x_shape
    return _xla_input_grad(kernel, g, x_shape=(n, h + pt + pb, w + pl + pr, c),
                           stride=stride, pads=((0, 0), (0, 0)))[:, pt:pt + h, pl:pl + w]
  x = jnp.zeros(x_shape, g.dtype)
  return jax.vjp(lambda x: _xla_forward(x, kernel, stride=stride, pads=pads), x)[1](g)[0]


def _phase_input_grad(kernel, g, *, x_shape, stride, pads):
  """The input gradient of a stride-s convolution, phase by phase.

  Padded input row r = s*m + a receives g[m - q] * kernel[a + s*q] for all q:
  for each phase a (and b across columns) that is a stride-1 correlation of g
  with the flipped sub-kernel kernel[a::s], which YNNPACK runs at GEMM speed,
  where XLA's own transpose convolves an s-dilated g (3/4 zeros at s = 2).
  """
  n, h, w, c = x_shape
  kh, kw = kernel.shape[:2]
  (sh, sw), ((pt, pb), (pl, pr)) = stride, pads
  _, ho, wo, _ = g.shape
  m_rows, m_cols = -(-(h + pt + pb) // sh), -(-(w + pl + pr) // sw)
  phases = []
  for a in range(sh):
    row = []
    for b in range(sw):
      sub = kernel[a::sh, b::sw]
      qa, qb = sub.shape[:2]
      if qa == 0 or qb == 0:  # kernel smaller than the stride: no taps here
        row.append(jnp.zeros((n, m_rows, m_cols, c), g.dtype))
        continue
      sub = sub[::-1, ::-1].transpose(0, 1, 3, 2)  # [qa, qb, O, C], flipped
      gp = jnp.pad(g, ((0, 0), (qa - 1, max(0, m_rows - ho)),
                       (qb - 1, max(0, m_cols - wo)), (0, 0)))
      gp = gp[:, :m_rows + qa - 1, :m_cols + qb - 1]
      row.append(_xla_forward(gp, sub, stride=(1, 1), pads=((0, 0), (0, 0))))
    phases.append(jnp.stack(row, axis=3))      # [N, M, M', sw, C]
  full = jnp.stack(phases, axis=2)             # [N, M, sh, M', sw, C]
  full = full.reshape(n, m_rows * sh, m_cols * sw, c)
  return full[:, pt:pt + h, pl:pl + w]


def _col2im_input_grad(kernel, g, *, x_shape, stride, pads):
  """One GEMM `g [N*Ho*Wo, O] @ kernel^T [O, kh*kw*C]`, then each tap's
  columns added into its shifted view of the padded input (col2im). For 1-3
  input channels, where XLA's transposed convolution has only C outputs."""
  n, h, w, c = x_shape
  kh, kw, _, o = kernel.shape
  (sh, sw), ((pt, pb), (pl, pr)) = stride, pads
  _, ho, wo, _ = g.shape
  cols = (g.reshape(-1, o) @ kernel.reshape(kh * kw * c, o).T).reshape(
      n, ho, wo, kh, kw, c)
  dx = jnp.zeros((n, max(h + pt + pb, sh * (ho - 1) + kh),
                  max(w + pl + pr, sw * (wo - 1) + kw), c), g.dtype)
  for i in range(kh):
    for j in range(kw):
      dx = dx.at[:, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw].add(
          cols[:, :, :, i, j])
  return dx[:, pt:pt + h, pl:pl + w]


def _winograd_input_grad(kernel, g, *, x_shape, stride, pads):
  """The input gradient of a stride-1 3x3 convolution with padding <= 2: the
  full correlation of g with the flipped, transposed kernel, by Winograd's
  F(2x2, 3x3); others XLA's own."""
  (pt, pb), (pl, pr) = pads
  if max(stride) > 1 or kernel.shape[:2] != (3, 3) or max(pt, pb, pl, pr) > 2:
    return _xla_input_grad(kernel, g, x_shape=x_shape, stride=stride, pads=pads)
  # Stride 1: g's Ho = H + pt + pb - 2 rows come back to H.
  return winograd.conv3x3(g, kernel, ((2 - pt, 2 - pb), (2 - pl, 2 - pr)),
                          transposed=True)


INPUT_GRAD: dict[str, Callable] = {"xla": _xla_input_grad,
                                   "phase": _phase_input_grad,
                                   "col2im": _col2im_input_grad,
                                   "winograd": _winograd_input_grad}


def _xla_weight_grad(x, g, *, kernel_shape, stride, pads):
  kernel = jnp.zeros(kernel_shape, g.dtype)
  return jax.vjp(lambda k: _xla_forward(x, k, stride=stride, pads=pads), kernel)[1](g)[0]


def _tap_gemm(view: Array, g2: Array, chunks: int = 1) -> Array:
  """`view [N, Ho, Wo, C']` and `g2 [N*Ho*Wo, O]` -> `[C', O]`, contracting
  over all pixels (a transposed-A GEMM; no transpose is materialized). With
  `chunks > 1` (dividing the pixels) as that many GEMMs over runs of pixels,
  batched, then summed: the small `[C', O]` result leaves the GEMM little
  to share between cores otherwise."""
  a = view.reshape(chunks, -1, view.shape[-1])
  return lax.dot_general(a, g2.reshape(chunks, -1, g2.shape[-1]),
                         (((1,), (1,)), ((0,), (0,)))).sum(axis=0)


def _shift_weight_grad(x, g, *, kernel_shape, stride, pads):
  """One GEMM per kernel tap: dW[i, j] = view(i, j)^T g."""
  kh, kw, c, o = kernel_shape
  g2 = g.reshape(-1, o)
  views = _views(_pad_input(x, pads), (kh, kw), stride, g.shape[1:3], range(kh))
  return jnp.stack([_tap_gemm(v, g2) for v in views]).reshape(kernel_shape)


def _rows_weight_grad(x, g, *, kernel_shape, stride, pads):
  """One GEMM per kernel row, over the row's taps concatenated on channels:
  a third of im2col's memory, GEMMs kw times deeper than "shift". Each GEMM
  in two halves of the pixels (`_tap_gemm`): Johnson's stride-2 layers,
  round robin, median of 9, ms, one GEMM -> two: 32->64 at 256 batch 4
  20.3 -> 18.5, batch 1 4.69 -> 4.16; 64->128 at 128 batch 1 3.61 -> 3.12;
  32->64 at 512 batch 1 19.1 -> 17.1 (four chunks no better)."""
  kh, kw, c, o = kernel_shape
  g2 = g.reshape(-1, o)
  chunks = 2 if g2.shape[0] % 2 == 0 else 1
  xp = _pad_input(x, pads)
  rows = [_tap_gemm(jnp.concatenate(
      _views(xp, (kh, kw), stride, g.shape[1:3], [i]), axis=-1), g2, chunks)
          for i in range(kh)]
  return jnp.stack(rows).reshape(kernel_shape)


def _im2col_weight_grad(x, g, *, kernel_shape, stride, pads):
  """im2col by concatenating the tap views, then one GEMM."""
  kh, kw, c, o = kernel_shape
  cols = jnp.concatenate(_views(_pad_input(x, pads), (kh, kw), stride,
                                g.shape[1:3], range(kh)), axis=-1)
  return _tap_gemm(cols, g.reshape(-1, o)).reshape(kernel_shape)


def _im2col_t_weight_grad(x, g, *, kernel_shape, stride, pads):
  """im2col in channel-major layout, then one GEMM `[kh*kw*C, M] @ [M, O]`
  (M = N*Ho*Wo): from few channels the patch matrix is small, and YNNPACK
  runs this layout of the product faster than the transposed-A one
  ([288, 65536] x [65536, 64]: 7.8 vs 10.2 ms). Views in the minor axis
  with a stride are slow to gather: meant for stride 1."""
  kh, kw, c, o = kernel_shape
  (sh, sw), (ho, wo) = stride, g.shape[1:3]
  xt = jnp.pad(x.transpose(3, 0, 1, 2), ((0, 0), (0, 0)) + tuple(pads))
  cols = jnp.concatenate(
      [xt[:, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
       .reshape(c, -1) for i in range(kh) for j in range(kw)], axis=0)
  return (cols @ g.reshape(-1, o)).reshape(kernel_shape)


def _transposed_weight_grad(x, g, *, kernel_shape, stride, pads):
  """XLA's own formulation (a convolution of x, channels as the batch, with g,
  pixels as the kernel), on explicitly transposed operands: the layouts are
  ours rather than XLA's layout assignment's."""
  kh, kw = kernel_shape[:2]
  (sh, sw), _ = stride, pads
  ho, wo = g.shape[1:3]
  # Crop the padded input to the rows and columns the windows reach.
  xp = _pad_input(x, pads)[:, :sh * (ho - 1) + kh, :sw * (wo - 1) + kw]
  out = lax.conv_general_dilated(
      xp.transpose(3, 1, 2, 0), g.transpose(1, 2, 0, 3), (1, 1),
      ((0, 0), (0, 0)), rhs_dilation=(sh, sw), dimension_numbers=_DN)
  return out.transpose(1, 2, 0, 3)  # [C, kh, kw, O] -> HWIO


def _winograd_weight_grad(x, g, *, kernel_shape, stride, pads):
  """The kernel gradient of a stride-1 3x3 convolution by Winograd's
  F(3x3, 2x2) (`winograd.weight_grad3x3`); others XLA's own."""
  if max(stride) > 1 or tuple(kernel_shape[:2]) != (3, 3):
    return _xla_weight_grad(x, g, kernel_shape=kernel_shape, stride=stride,
                            pads=pads)
  return winograd.weight_grad3x3(x, g, pads)


WEIGHT_GRAD: dict[str, Callable] = {
    "xla": _xla_weight_grad, "shift": _shift_weight_grad,
    "rows": _rows_weight_grad, "im2col": _im2col_weight_grad,
    "im2col_t": _im2col_t_weight_grad,
    "transposed": _transposed_weight_grad, "winograd": _winograd_weight_grad}


# --------------------------------------------------------------------------
# Which formulation, from static shapes (CPU only).

def plan(x_shape, kernel_shape, stride: IntPair = 1,
         padding: Padding = 0) -> dict[str, str]:
  """The formulations `conv2d` uses on CPU for these shapes.

  Args:
    x_shape: `(N, H, W, C)`.
    kernel_shape: `(kh, kw, C, O)`.
    stride, padding: as in `conv2d`.

  Returns:
    `{"forward": name in FORWARD, "input_grad": name in INPUT_GRAD,
    "weight_grad": name in WEIGHT_GRAD}`.
  """
  stride, pads = _pair(stride, "stride"), _pads(padding)
  c, n = x_shape[-1], x_shape[0]
  ho, wo = _out_hw(x_shape, kernel_shape, stride, pads)
  return {"forward": _forward_rule(c, kernel_shape, stride, pads, n * ho * wo),
          "input_grad": _input_grad_rule(c, kernel_shape, stride, pads, ho * wo, n),
          "weight_grad": _weight_grad_rule(c, kernel_shape, stride, n, ho * wo)}


# The rules below come from timings of every formulation of each pass,
# called round robin (median of 5), on the 2-core EPYC under the library's
# XLA:CPU setting (`cnnviz_jax/_xla_cpu.py`: Eigen convolutions, YNNPACK
# matrix products), on the layers of VGG16 at 224 (batch 4), the CIFAR VGG
# (batch 256), AlexNet and Johnson et al.'s style network at 256 (batch 1
# and 4). Milliseconds, XLA's own -> the formulation chosen. Under that
# setting XLA's own formulation won almost everywhere; with YNNPACK
# convolutions (jax 0.10.2's default) "pad4", "s2d" and "crop" had won too.

def _forward_rule(c: int, kernel_shape, stride, pads, batch_pixels: int) -> str:
  kh, kw, _, o = kernel_shape
  # A large kernel to few outputs (an RGB output layer), see
  # `_split_forward`: 9x9 32->3 at 264x264 20.4 -> 4.2, 16->3 16.8 -> 2.7.
  if o < 8 and min(kh, kw) >= 5:
    return "split"
  # A large kernel from RGB (Johnson's first layer), 2x2 output block by
  # block (`_phases_forward`; eighth session, round robin, median of 9):
  # 9x9 3->16 at 1032 62.6 -> 35.1 (a 9x1 convolution over column tiles,
  # the rule before, removed since: 71.4), 520 13.6 -> 8.4 (11.6), 4 x 264 13.9 -> 8.5 (11.7),
  # 4 x 88 1.41 -> 0.84 (1.09); 9x9 3->32 at 256 (padding 4) batch 4 19.4 ->
  # 14.7, at 1032 level (86.4 vs 83.4). Not for 3x3 (VGG16 conv1_1 5.5 vs
  # 9.2).
  if c < 4 and min(kh, kw) >= 5 and o <= 32 and max(stride) == 1:
    return "phases"
  # Unpadded stride-1 3x3 convolutions on large maps to few outputs
  # (`_crop_forward`): 258x258 32->16 4.5 -> 3.1; not to more outputs
  # (258x258 32->64 6.3 vs 10.3, 514x514 32->64 52.9 vs 56.3, batch 4 x
  # 66x66 128->128 12.1 vs 13.0) nor from RGB (9x9 3->32 at 264: 4.2 vs 4.8).
  if (max(stride) == 1 and kh * kw > 1 and c >= 4 and o <= 16
      and batch_pixels >= 256 * 256 and min(p for pair in pads for p in pair) < 1):
    return "crop"
  if winograd.planned(c, kernel_shape, stride, batch_pixels):
    return "winograd"
  # "pad4" (RGB padded to 4 channels) and "s2d" (space-to-depth for stride
  # 2) lost everywhere: 9x9 3->32 at 264 4.2 vs 5.3, 3x3 stride 2 32->64 at
  # 258 3.2 vs 5.6.
  return "xla"


def _input_grad_rule(c: int, kernel_shape, stride, pads, out_pixels: int,
                     batch: int) -> str:
  kh, kw = kernel_shape[:2]
  taps, strided = kh * kw, max(stride) > 1
  if (winograd.planned(c, kernel_shape, stride, batch * out_pixels)
      and max(p for pair in pads for p in pair) <= 2):
    return "winograd"
  if strided:
    # 3x3 stride 2 per output phase (`_phase_input_grad`) on maps with 64x64
    # outputs and up: 32->64 at 258 4.0 -> 2.8, 64->128 at 130 3.0 -> 2.2
    # (batch 4: 24.2 -> 11.5); smaller maps lost (40x40 outputs 16->32 at
    # batch 4 0.65 vs 1.01), as did AlexNet's 11x11 stride 4 from RGB.
    return "phase" if c >= 4 and out_pixels >= 64 * 64 else "xla"
  # The image gradient of a 3x3 first layer (saliency): VGG16 conv1_1 at 224
  # batch 4 17.6 -> 7.5, CIFAR VGG conv1_1 at batch 256 24.2 -> 11.6; a 9x9
  # one lost (29.9 vs 39.1).
  return "col2im" if c < 4 and taps <= 9 else "xla"


def _weight_grad_rule(c: int, kernel_shape, stride, batch: int,
                      out_pixels: int) -> str:
  kh, kw = kernel_shape[:2]
  taps, strided = kh * kw, max(stride) > 1
  if winograd.planned_weight_grad(c, kernel_shape, stride, batch, out_pixels):
    return "winograd"
  # Remeasured in the fifth session, after `configure_malloc` kept one malloc
  # arena (page faults had inflated the earlier timings of the formulations
  # with large temporaries); round robin, median of 9, ms.
  if c < 4:
    # 3x3 from RGB on XLA's formulation with transposed operands, on maps
    # from 64x64: VGG16 conv1_1 at 224 batch 4 7.84 -> 6.80, batch 1 3.07 ->
    # 0.90 (eighth session: level with `_im2col_t_weight_grad` at batch 4,
    # 1.41 vs 1.90 at batch 1). On smaller maps that channel-major im2col
    # (eighth session, median of 9): the CIFAR VGG's 32x32 at batch 128
    # 6.65-8.06 -> 4.96-5.44 (transposed operands 6.04-7.60), batch 256
    # 12.0 -> 10.9. Larger kernels from RGB: transposed operands (it was
    # XLA's own): 9x9 3->32 at 256 (padding 4) batch 4 24.1 -> 15.4, at 264
    # batch 1 4.26 -> 3.55; 9x9 3->16 at 1032 44.1 -> 41.1, 4 x 88x88 1.07
    # -> 0.88 (4 x 264x264: level); the im2col lost there (81 taps: 48.3 at
    # 256 batch 4). AlexNet's 11x11 stride 4 from RGB: XLA's own.
    if not strided:
      return ("transposed" if taps > 9 or out_pixels >= 64 * 64
              else "im2col_t")
    return "xla"
  if strided:
    # 3x3 stride 2, a GEMM per kernel row (`_rows_weight_grad`), for up to
    # 4 images: Johnson's 32->64 at 256 batch 4 22.8 -> 19.5, batch 1 19.8
    # -> 7.05 (a GEMM per tap 8.39); 64->128 at 128 batch 1 9.61 -> 4.16,
    # batch 4 15.0 -> 14.5. XLA's own for larger batches (batch 8 32->64
    # at 128 10.9 vs 14.1, batch 16 64->128 at 64 13.2 vs 17.1).
    return "rows" if batch <= 4 else "xla"
  # Other stride-1 layers from many channels: XLA's own beat the GEMM
  # formulations (VGG16 conv1_2 80.8 vs "transposed" 133 and "shift" 218;
  # CIFAR VGG at batch 256 16x16 128->128 71.3 vs 123 and 144).
  return "xla"
