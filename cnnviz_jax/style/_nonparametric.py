"""Non-parametric texture synthesis: the classical baseline (Efros & Leung
1999, "Texture Synthesis by Non-parametric Sampling"), grown in scan-line
order with a causal neighbourhood (Wei & Levoy 2000).

Each output pixel, in raster order, is copied from an example pixel whose
causal neighbourhood (the rows above within the window and the pixels to its
left) is nearest, in a Gaussian-weighted sum of squared differences over the
neighbours already generated, choosing at random among the candidates within
`1 + tolerance` of the best (Efros & Leung, section 2.1). All candidate
windows are compared at once as one matrix-vector product per pixel, inside a
jitted `lax.fori_loop` over the pixels.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from cnnviz_jax.style import _images

Array = jax.Array


def causal_offsets(window: int) -> np.ndarray:
  """`(dy, dx)` int `[K, 2]` of the causal neighbourhood of a `window` x
  `window` square: the `window // 2` rows above (full width) and the
  `window // 2` pixels to the left, i.e. every neighbour that raster order
  has already generated. K = half * window + half."""
  half = window // 2
  offs = [(dy, dx) for dy in range(-half, 1) for dx in range(-half, half + 1)
          if dy < 0 or dx < 0]
  return np.asarray(offs, np.int32)


def _weights(offsets: np.ndarray, window: int) -> np.ndarray:
  # Efros & Leung weight neighbours by a 2-D Gaussian with sigma = window/6.4
  # (their section 2.2), so near pixels count most.
  sigma = window / 6.4
  d2 = np.sum(offsets.astype(np.float64) ** 2, axis=1)
  return np.exp(-d2 / (2 * sigma ** 2)).astype(np.float32)


@functools.partial(jax.jit, static_argnames=("hw", "window"))
def _synthesize(example: Array, key: Array, tolerance, *, hw, window):
  h, w = hw
  eh, ew, _ = example.shape
  half = window // 2
  offs = causal_offsets(window)
  wts = jnp.asarray(_weights(offs, window))
  # Candidates: example positions whose whole causal window lies inside the
  # example (Wei & Levoy's non-toroidal example), flattened `[M, K * 3]`.
  ys, xs = np.meshgrid(np.arange(half, eh), np.arange(half, ew - half), indexing="ij")
  ys, xs = ys.ravel(), xs.ravel()
  cand = example[ys[:, None] + offs[:, 0], xs[:, None] + offs[:, 1]]  # [M, K, 3]
  cand_flat = cand.reshape(len(ys), -1)
  centers = example[ys, xs]  # [M, 3]
  # The canvas is padded by `half` above, left and right; `valid` marks the
  # pixels generated so far (the padding never is).
  canvas = jnp.zeros((h + half, w + 2 * half, 3), jnp.float32)
  valid = jnp.zeros((h + half, w + 2 * half), jnp.float32)
  oy, ox = jnp.asarray(offs[:, 0] + half), jnp.asarray(offs[:, 1] + half)
  cand_sq = jnp.square(cand)  # [M, K, 3]

  def body(i, carry):
    canvas, valid, picked = carry
    r, c = i // w, i % w
    nb_patch = jax.lax.dynamic_slice(canvas, (r, c, 0), (half + 1, window, 3))
    ok_patch = jax.lax.dynamic_slice(valid, (r, c), (half + 1, window))
    nb = nb_patch[oy, ox]               # [K, 3]
    m = ok_patch[oy, ox] * wts          # [K]: weight of each known neighbour
    # sum_k m_k |cand_k - nb_k|^2 for every candidate at once:
    # sum m c^2 - 2 sum m c nb + sum m nb^2 (the last is the same for all).
    d = (jnp.einsum("mkc,k->m", cand_sq, m)
         - 2.0 * cand_flat @ (m[:, None] * nb).reshape(-1)
         + jnp.sum(m[:, None] * jnp.square(nb)))
    d = jnp.maximum(d, 0.0) / jnp.maximum(jnp.sum(m), 1e-12)
    dmin = jnp.min(d)
    # Candidates within (1 + tolerance) of the best, plus float slack so that
    # exact matches (d = 0 up to rounding) all count as ties.
    ok = d <= dmin * (1.0 + tolerance) + 1e-6
    j = jax.random.categorical(jax.random.fold_in(key, i),
                               jnp.where(ok, 0.0, -jnp.inf))
    canvas = canvas.at[r + half, c + half].set(centers[j])
    valid = valid.at[r + half, c + half].set(1.0)
    return canvas, valid, picked.at[i].set(j)

  picked = jnp.zeros((h * w,), jnp.int32)
  canvas, _, picked = jax.lax.fori_loop(0, h * w, body, (canvas, valid, picked))
  return canvas[half:, half:half + w], picked


def texture_nonparametric(example, hw: tuple[int, int], *, key: Array,
                          window: int = 11, tolerance: float = 0.1,
                          return_sources: bool = False):
  """Efros & Leung (1999) texture synthesis in Wei & Levoy (2000) scan-line
  order (see module doc).

  Args:
    example: the example texture, `[h, w, 3]` (or `[1, h, w, 3]`, grayscale or
      RGBA: converted) float in [0, 1] or uint8; at least `window` pixels
      each way.
    hw: output `(H, W)`, any size.
    key: PRNG key; pixel `i` (raster order) draws with `fold_in(key, i)`.
    window: odd side of the square neighbourhood, >= 3; it should cover the
      texture's largest regular feature (Efros & Leung, section 3).
    tolerance: candidates with distance <= (1 + tolerance) * best are drawn
      uniformly (Efros & Leung use 0.1).
    return_sources: also return the `[H, W, 2]` example coordinates each
      output pixel was copied from.

  Returns:
    float32 `[H, W, 3]`: every pixel is a pixel of the example.

  Cost: `H W` steps, each `O(M K)` with `M ~ h w` candidates and
  `K = window * (window // 2) + window // 2` neighbours.
  """
  ex = _images.to_rgb(example, name="example")[0]
  if isinstance(window, bool) or not isinstance(window, int) or window < 3 or window % 2 == 0:
    raise ValueError(f"window must be an odd int >= 3; got {window!r}.")
  eh, ew = ex.shape[:2]
  if eh < window or ew < window:
    raise ValueError(f"example is {eh}x{ew}; it must be at least window x window "
                     f"({window}x{window}) so that some candidate has a whole "
                     "neighbourhood inside it.")
  if len(hw) != 2 or min(hw) < 1:
    raise ValueError(f"hw must be (H, W) with H, W >= 1; got {hw!r}.")
  if not tolerance >= 0:
    raise ValueError(f"tolerance must be >= 0; got {tolerance!r}.")
  out, picked = _synthesize(ex, key, jnp.float32(tolerance),
                            hw=(int(hw[0]), int(hw[1])), window=window)
  if not return_sources:
    return out
  half = window // 2
  cols = ew - 2 * half
  src = jnp.stack([picked // cols + half, picked % cols + half], -1)
  return out, src.reshape(int(hw[0]), int(hw[1]), 2)
