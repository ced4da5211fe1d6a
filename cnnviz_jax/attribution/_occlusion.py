"""Occlusion maps (Zeiler & Fergus 2014, figure 7)."""

import functools
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from cnnviz_jax.attribution import _incremental
from cnnviz_jax._chunks import equal_chunks
from cnnviz_jax.attribution._common import (
    Targets, _check_count, _check_images, _chunk_size, _scores,
    _score_copies, fill_images, target_objective)

Array = jax.Array


@functools.partial(jax.jit, static_argnames=("window",))
def _occlusion_chunk(model, images, fill, objective, window, ys, xs):
  """Scores `[C, N]` with the patch at `(ys[c], xs[c])` covered by `fill`."""
  h, w = images.shape[1:3]
  iy = jnp.arange(h)[None, :, None]
  ix = jnp.arange(w)[None, None, :]
  mask = ((iy >= ys[:, None, None]) & (iy < ys[:, None, None] + window[0]) &
          (ix >= xs[:, None, None]) & (ix < xs[:, None, None] + window[1]))
  x = jnp.where(mask[:, None, :, :, None], fill[None], images[None])
  return _score_copies(model, x, objective)


def _pair(value, name: str) -> tuple[int, int]:
  pair = (value, value) if isinstance(value, (int, np.integer)) else value
  try:
    pair = tuple(pair)
  except TypeError:
    pair = ()
  if len(pair) != 2:
    raise ValueError(f"{name} must be a positive int or (h, w); got {value!r}.")
  return tuple(_check_count(v, name) for v in pair)


def occlusion(model, images: Array, targets: Targets, *, window=(8, 8),
              stride=(4, 4), fill: Any = "mean", blur_sigma: float = 4.0,
              probabilities: bool = True,
              chunk_size: Optional[int] = None,
              _incremental_path: Optional[bool] = None) -> Array:
  """Occlusion map (Zeiler & Fergus 2014, figure 7): how much the target's
  score drops when a patch is covered, at each patch position.

  Higher means more important, as for every attribution: entry (i, j) is
  `f(x) - f(x with the patch at (i * stride_h, j * stride_w) covered)`, the
  convention of Captum's `Occlusion` (which then averages the windows
  covering each pixel).

  Sequential zoo models recompute, per patch position, only the activations
  the patch reaches, where that saves enough (`_incremental`: 2.9x for VGG16
  at 224 with a 64-pixel window on this CPU); the values are the same up to
  float rounding.

  Args:
    model: a `Model`.
    images: float32 `[N, H, W, 3]` RGB in [0, 1].
    targets: int `[N]` classes, a neuron spec or an `Objective`.
    window: patch `(height, width)` in pixels (or one int).
    stride: step between patch positions `(dy, dx)` (or one int).
    fill: "mean" (the model's dataset mean colour), "zeros", "blur" (a blurred
      copy of the image, std `blur_sigma` pixels), a float in [0, 1], or an
      array in [0, 1] broadcastable to `images` (see `fill_images`).
    blur_sigma: Gaussian std in pixels for `fill="blur"`, > 0.
    probabilities: class targets: f is the softmax probability (as Zeiler &
      Fergus) rather than the logit. Other targets always give their value.
    chunk_size: at most this many patch positions per network call (default:
      bounded pixels).
    _incremental_path: tests and benchmarks only: True forces the incremental
      evaluation where it applies, False the full recompute; None chooses.

  Returns:
    float32 `[N, rows, cols]`, rows = (H - window_h) // stride_h + 1.
  """
  window, stride = _pair(window, "window"), _pair(stride, "stride")
  _check_images(model, images)
  objective = target_objective(model, images, targets,
                               probabilities=bool(probabilities))
  h, w = images.shape[1:3]
  if window[0] > h or window[1] > w:
    raise ValueError(f"window {window} is larger than the images ({h}x{w}).")
  fill_img = fill_images(model, images, fill, blur_sigma=blur_sigma)
  rows, cols = (h - window[0]) // stride[0] + 1, (w - window[1]) // stride[1] + 1
  size = _chunk_size(chunk_size, rows * cols, images)
  if images.shape[0] == 0:
    return jnp.zeros((0, rows, cols), jnp.float32)
  ys = np.repeat(np.arange(rows) * stride[0], cols)
  xs = np.tile(np.arange(cols) * stride[1], rows)
  p = _incremental.choose(model, (h, w), window, objective, _incremental_path)
  if p is None:
    parts = [_occlusion_chunk(model, images, fill_img, objective, window,
                              jnp.asarray(ys[ids]), jnp.asarray(xs[ids]))
             for ids, _ in equal_chunks(rows * cols, size)]
    clean = _scores(model, images, objective)
  else:
    base = _incremental.base(model, images, p)
    parts = [_incremental.occlusion_chunk(
        model, base, fill_img, objective, window, p, jnp.asarray(ys[ids]),
        jnp.asarray(xs[ids])) for ids, _ in equal_chunks(rows * cols, size)]
    clean = _incremental.clean_scores(model, base, objective, p)
  covered = jnp.concatenate(parts, axis=0)[:rows * cols]  # [positions, N]
  drop = clean[None] - covered
  return drop.T.reshape(images.shape[0], rows, cols)
