"""Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray 2016, "Fast
Algorithms for Convolutional Neural Networks") for stride-1 3x3
convolutions: a CPU formulation of `conv.conv2d` (`conv_plan`).

Each 2x2 block of outputs comes from the 4x4 input tile around it:
`Y = A^T [(G g G^T) . (B^T d B)] A`. The 16 elementwise products over
channels are 16 matrix products `[tiles, C] @ [C, O]`, 16 multiplications
per 2x2 outputs instead of 36: 2.25x fewer multiply-adds than the direct
convolution, paid for by the transforms, passes over 4x the input and output
maps. The transforms use only 0, +-1/2 and +-1, so float32 results differ
from the direct convolution by rounding only (about 1e-6 of the largest
output, `tests/test_conv.py`); the larger tiles of F(4x4, 3x3) lose digits.
"""

import contextlib
import os
from typing import Optional

import jax
from jax import lax
import jax.numpy as jnp

Array = jax.Array

# Whether `conv_plan` may pick these formulations (tests switch it).
ENABLED = True
# The least work, output pixels x input channels x output channels, that
# takes Winograd: 2**26 (1.2 GFLOP forward). Each layer's Winograd passes
# take ~1.4 s longer to compile (-O2, fwd + both gradients, batch 8 16x16
# 128->128: 0.13 -> 1.37 s; ~50 more XLA kernels a pass), which small layers
# never earn back: fwd + both gradients, ms, XLA's -> Winograd's, that layer
# 4.8 -> 5.0-5.4, batch 8 8x8 256->256 5.0 -> 4.5-4.8; the gallery (one
# process, 21 sections, programs called a few times each) took 264 s with
# Winograd from 2**24, 117 s without. At 2**26 the three passes saved 1.7
# ms a call (batch 16 16x16 128->128: 9.2 -> 7.6 ms), at 2**28 43 ms (batch
# 4 56x56 256->256: 110 -> 67). Below it Winograd still won where called
# long enough (the stylizer's 64->64 residual layers at 64x64, 2**24, for
# 256-px images: stylization 0.93x -> 1.07x torch.compile's in the sixth
# session, 0.87x -> 0.95x in the seventh); `use(True, min_work=...)` takes
# it there.
MIN_WORK = 1 << 26


@contextlib.contextmanager
def use(on: bool = True, min_work: Optional[int] = None):
  """Within the block, `conv_plan` takes Winograd (`on`) from `min_work`
  (default: `MIN_WORK`'s value) on, or not at all, for the programs traced
  in the block (JAX reuses a program already traced for the same shapes).
  E.g. a one-shot process that compiles many programs and calls each a few
  times: `with winograd.use(False): ...`."""
  global ENABLED, MIN_WORK
  saved = ENABLED, MIN_WORK
  ENABLED, MIN_WORK = on, MIN_WORK if min_work is None else min_work
  try:
    yield
  finally:
    ENABLED, MIN_WORK = saved


def _optimized() -> bool:
  """False under `--xla_backend_optimization_level=0` (the tests' setting):
  unoptimized, the transforms' elementwise loops are not vectorized and
  Winograd lost everywhere (fwd + both gradients, batch 4 56x56 256->256:
  139 ms XLA's, 190 ms Winograd's; at -O2 110 -> 67)."""
  flags = os.environ.get("XLA_FLAGS", "")
  return "xla_backend_optimization_level=0" not in flags.replace("--", "")


def _eligible(c: int, kernel_shape, stride, batch_pixels: int) -> bool:
  """Enabled, a stride-1 3x3 kernel, at least `MIN_WORK`, optimized code."""
  kh, kw, _, o = kernel_shape
  return (ENABLED and (kh, kw) == (3, 3) and max(stride) == 1
          and batch_pixels * c * o >= MIN_WORK and _optimized())


def planned(c: int, kernel_shape, stride, batch_pixels: int) -> bool:
  """Whether `conv_plan` takes F(2x2, 3x3) for the forward pass and input
  gradient of a convolution with `c` input channels, `kernel_shape` `(kh,
  kw, C, O)` and `batch_pixels` output pixels over the batch.

  Stride-1 3x3 layers with many channels; measured forward / input gradient,
  ms, XLA's own -> this: VGG16 at 224 batch 4 conv2_2 40.2 -> 34.4 / 40.2
  -> 33.7, conv3_2 35.2 -> 21.6 / 35.8 -> 24.5, conv4_2 35.0 -> 18.5 / 37.5
  -> 18.8, conv5_1 8.5 -> 5.8 / 11.3 -> 5.9 (batch 16 up to 2.1x); the
  CIFAR VGG at batch 128 conv2_2 26.0 -> 21.3 / 25.9 -> 21.6, conv3_2 23.2
  -> 14.2 / 23.6 -> 17.7; the stylizer's 64->64 residual layer at 256x256
  14.9 -> 11.7 / 14.8 -> 11.8. The transforms are passes over 4x the maps,
  so with 64 channels only up to 64K output pixels (VGG16 conv1_2 at batch
  4, 200K: level; batch 16: 171 vs 268); from 32 channels level or behind.
  """
  if not _eligible(c, kernel_shape, stride, batch_pixels):
    return False
  m = min(c, kernel_shape[3])
  return m >= 128 or (m >= 64 and batch_pixels <= 64 * 1024)


def planned_weight_grad(c: int, kernel_shape, stride, batch: int,
                        out_pixels: int) -> bool:
  """Whether `conv_plan` takes F(3x3, 2x2) for the weight gradient (shapes as
  `planned`; `out_pixels` per image).

  XLA's own -> this, ms: VGG16 at 224 batch 4 conv2_2 46.6 -> 39.7, conv3_2
  39.7 -> 27.1, conv4_2 37.2 -> 23.1, conv5_1 10.6 -> 7.7; the CIFAR VGG at
  batch 128 conv2_1 17.8 -> 14.8, conv2_2 33.3 -> 25.7, conv3_2 26.7 ->
  19.0, conv4_1 10.0 -> 7.3. 64->64 wins for one image (256x256 51.0 ->
  26.4) or tiny maps (4x20x20 1.41 -> 0.95) but loses at batch 4 from 32x32
  (2.2 vs 2.6, 66x66 6.3 vs 6.9, VGG16 conv1_2 56.7 vs 87.7)."""
  lo, hi = sorted((c, kernel_shape[3]))
  if lo < 64 or not _eligible(c, kernel_shape, stride, batch * out_pixels):
    return False
  return hi >= 128 or batch == 1 or batch * out_pixels <= 2048


# Lavin & Gray 2016, section 4.1.
_BT = ((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1))
_G = ((1, 0, 0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0, 0, 1))
_AT = ((1, 1, 1, 0), (0, 1, -1, -1))


def _combine(coefs, xs):
  """`sum_i coefs[i] * xs[i]`, skipping zero coefficients."""
  out = None
  for c, x in zip(coefs, xs):
    if c == 0:
      continue
    t = x if c == 1 else -x if c == -1 else c * x
    out = t if out is None else out + t
  return out


def kernel_transform(kernel: Array) -> list[Array]:
  """`G g G^T` of a `[3, 3, C, O]` kernel: 16 `[C, O]` matrices, row-major
  over the 4x4 transformed tile."""
  rows = [_combine(_G[u], [kernel[a] for a in range(3)]) for u in range(4)]
  return [_combine(_G[v], [rows[u][b] for b in range(3)])
          for u in range(4) for v in range(4)]


def _input_tiles(x: Array, pads, th: int, tw: int) -> list[Array]:
  """`B^T d B` of every 4x4 tile of the padded `x` starting at `(2i, 2j)`,
  `i < th, j < tw`: 16 `[N * th * tw, C]` arrays, row-major over the 4x4
  transformed tile (zeros beyond the padded map)."""
  xp = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
  n, hp, wp, c = xp.shape
  xp = jnp.pad(xp, ((0, 0), (0, 2 * th + 2 - hp), (0, 2 * tw + 2 - wp), (0, 0)))
  rows = [xp[:, a:a + 2 * th:2] for a in range(4)]
  mixed = [_combine(_BT[u], rows) for u in range(4)]
  v = []
  for m in mixed:
    cols = [m[:, :, b:b + 2 * tw:2] for b in range(4)]
    v += [_combine(_BT[w], cols).reshape(n * th * tw, c) for w in range(4)]
  return v


def weight_grad3x3(x: Array, g: Array, pads) -> Array:
  """The kernel gradient `[3, 3, C, O]` of a stride-1 3x3 convolution of
  `x` `[N, H, W, C]` with padding `pads`, given the output gradient `g`
  `[N, Ho, Wo, O]`: `dW[a, b] = sum x_pad[n, y + a, x + b] g[n, y, x]`.

  Per 2x2 block of `g` and the 4x4 input tile under it this is a 3x3
  correlation, Winograd's F(3x3, 2x2), whose matrices are F(2x2, 3x3)'s
  with roles exchanged (input `B^T`, filter `A`, output `G`); the sum over
  blocks happens in the transformed domain, as 16 products `[C, tiles] @
  [tiles, O]`."""
  n, ho, wo, o = g.shape
  th, tw = -(-ho // 2), -(-wo // 2)
  v = _input_tiles(x, pads, th, tw)
  gp = jnp.pad(g, ((0, 0), (0, 2 * th - ho), (0, 2 * tw - wo), (0, 0)))
  # F(3x3, 2x2)'s filter transform A h A^T of each 2x2 block h of g.
  rows = [gp[:, p::2] for p in range(2)]                   # [n, th, 2tw, o]
  at = tuple(zip(*_AT))                                    # A: [4][2]
  mixed = [_combine(at[u], rows) for u in range(4)]
  hs = []
  for m in mixed:
    cols = [m[:, :, q::2] for q in range(2)]
    hs += [_combine(at[w], cols).reshape(n * th * tw, o) for w in range(4)]
  dims = (((0,), (0,)), ((), ()))
  prod = [lax.dot_general(v[i], hs[i], dims) for i in range(16)]  # [C, O]
  gt = tuple(zip(*_G))                                     # G^T: [3][4]
  mid = [_combine(gt[a], [prod[4 * r + s] for r in range(4)]) for s in range(4)
         for a in range(3)]                                # [s][a] flattened
  return jnp.stack([jnp.stack([_combine(gt[b], [mid[3 * s + a] for s in range(4)])
                               for b in range(3)]) for a in range(3)])


def conv3x3(x: Array, kernel: Array, pads, *, transposed: bool = False) -> Array:
  """Stride-1 3x3 cross-correlation of `x` `[N, H, W, C]` with `kernel`
  `[3, 3, C, O]` and zero padding `((top, bottom), (left, right))`, as
  `lax.conv_general_dilated`; `[N, H + top + bottom - 2, W + left + right -
  2, O]`. `transposed=True`: with the flipped, transposed kernel
  `kernel[::-1, ::-1]` as `[3, 3, O, C]` (x has O channels, the output C;
  the input gradient of a stride-1 convolution), without copying it."""
  n, h, w, _ = x.shape
  o = kernel.shape[2 if transposed else 3]
  ho = h + pads[0][0] + pads[0][1] - 2
  wo = w + pads[1][0] + pads[1][1] - 2
  th, tw = -(-ho // 2), -(-wo // 2)  # 2x2 output blocks
  v = _input_tiles(x, pads, th, tw)
  u = kernel_transform(kernel[::-1, ::-1] if transposed else kernel)
  # 16 separate products: XLA:CPU hands each to its GEMM, faster here than
  # one batched product (14x14 512->512 batch 4: 24 vs 28 ms, 28x28 36 vs
  # 47 ms). A transposed kernel is contracted over its second axis in place
  # (a transposed copy in the kernel transform cost 3x at 14x14 512->512).
  dims = (((1,), (1 if transposed else 0,)), ((), ()))
  prod = [lax.dot_general(v[i], u[i], dims) for i in range(16)]  # [tiles, O]
  out = []
  for p in range(2):
    mid = [_combine(_AT[p], [prod[4 * r + s] for r in range(4)]) for s in range(4)]
    out.append(jnp.stack([_combine(_AT[q], mid) for q in range(2)], axis=1))
  y = jnp.stack(out, axis=1)                              # [tiles, p, q, O]
  y = y.reshape(n, th, tw, 2, 2, o).transpose(0, 1, 3, 2, 4, 5)
  return y.reshape(n, 2 * th, 2 * tw, o)[:, :ho, :wo]
