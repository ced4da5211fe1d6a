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


def conv3x3(x: Array, kernel: Array, pads, *, transposed: bool = False) -> Array:
  """Stride-1 3x3 cross-correlation of `x` `[N, H, W, C]` with `kernel`
  `[3, 3, C, O]` and zero padding `((top, bottom), (left, right))`, as
  `lax.conv_general_dilated`; `[N, H + top + bottom - 2, W + left + right -
  2, O]`. `transposed=True`: with the flipped, transposed kernel
  `kernel[::-1, ::-1]` as `[3, 3, O, C]` (x has O channels, the output C;
  the input gradient of a stride-1 convolution), without copying it."""
  xp = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
  n, hp, wp, c = xp.shape
  o = kernel.shape[2 if transposed else 3]
  ho, wo = hp - 2, wp - 2
  th, tw = -(-ho // 2), -(-wo // 2)  # 2x2 output blocks
  xp = jnp.pad(xp, ((0, 0), (0, 2 * th + 2 - hp), (0, 2 * tw + 2 - wp), (0, 0)))
  # B^T d B, rows then columns; tile (i, j) starts at input (2i, 2j).
  rows = [xp[:, a:a + 2 * th:2] for a in range(4)]
  mixed = [_combine(_BT[u], rows) for u in range(4)]
  v = []
  for m in mixed:
    cols = [m[:, :, b:b + 2 * tw:2] for b in range(4)]
    v += [_combine(_BT[w], cols).reshape(n * th * tw, c) for w in range(4)]
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
