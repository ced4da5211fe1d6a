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

import jax
from jax import lax
import jax.numpy as jnp

Array = jax.Array

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
