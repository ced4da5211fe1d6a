"""Occlusion maps (Zeiler & Fergus 2014, figure 7)."""

import functools
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from cnnviz_jax import image
from cnnviz_jax.attribution._common import (
    Targets, _check_images, _chunk_size, _chunks, _parse_targets, _scores, _tile)

Array = jax.Array

def _fill(model, images, fill, blur_sigma):
  if isinstance(fill, str):
    if fill == "mean":
      return jnp.broadcast_to(jnp.asarray(model.mean, images.dtype), images.shape)
    if fill == "zeros":
      return jnp.zeros_like(images)
    if fill == "blur":
      return image.gaussian_blur(images, blur_sigma)
    raise ValueError(f"unknown fill {fill!r}; valid: 'mean' (the dataset mean),"
                     " 'zeros', 'blur', a float or an image array.")
  return jnp.broadcast_to(jnp.asarray(fill, images.dtype), images.shape)


@functools.partial(jax.jit, static_argnames=("neuron", "window", "probabilities"))
def _occlusion_chunk(model, images, fill, classes, neuron, window, probabilities,
                     ys, xs):
  n, h, w, _ = images.shape
  c = ys.shape[0]
  iy = jnp.arange(h)[None, :, None]
  ix = jnp.arange(w)[None, None, :]
  mask = ((iy >= ys[:, None, None]) & (iy < ys[:, None, None] + window[0]) &
          (ix >= xs[:, None, None]) & (ix < xs[:, None, None] + window[1]))
  mask = mask[:, None, :, :, None]
  x = jnp.where(mask, fill[None], images[None]).reshape(c * n, h, w, -1)
  return _scores(model, x, _tile(classes, c), neuron, probabilities).reshape(c, n)


def occlusion(model, images: Array, targets: Targets, *, window=(8, 8),
              stride=(4, 4), fill: Any = "mean", blur_sigma: float = 4.0,
              probabilities: bool = True,
              chunk_size: Optional[int] = None) -> Array:
  """Occlusion map (Zeiler & Fergus 2014, figure 7): the target's score with a
  square patch covered, at each patch position.

  Args:
    model: a `Model`.
    images: float32 `[N, H, W, 3]` RGB in [0, 1].
    targets: int `[N]` classes or a neuron spec.
    window: patch `(height, width)` in pixels (or one int).
    stride: step between patch positions `(dy, dx)` (or one int).
    fill: "mean" (the model's dataset mean colour), "zeros", "blur" (a blurred
      copy of the image, std `blur_sigma` pixels), a float, or an array
      broadcastable to `images`.
    blur_sigma: Gaussian std in pixels for `fill="blur"`.
    probabilities: class targets: softmax probability (as Zeiler & Fergus)
      rather than the logit. Neuron targets always give the activation.
    chunk_size: patch positions per network call (default: bounded pixels).

  Returns:
    float32 `[N, rows, cols]`, rows = (H - window_h) // stride_h + 1; entry
    (i, j) is the score with the patch at `(i * stride_h, j * stride_w)`.
  """
  window = (window, window) if isinstance(window, (int, np.integer)) else tuple(window)
  stride = (stride, stride) if isinstance(stride, (int, np.integer)) else tuple(stride)
  _check_images(model, images)
  classes, neuron = _parse_targets(model, images, targets)
  h, w = images.shape[1:3]
  for name, v in (("window", window), ("stride", stride)):
    if len(v) != 2 or min(v) < 1:
      raise ValueError(f"{name} must be a positive int or (h, w); got {v!r}.")
  if window[0] > h or window[1] > w:
    raise ValueError(f"window {window} is larger than the images ({h}x{w}).")
  fill_img = _fill(model, images, fill, blur_sigma)
  rows, cols = (h - window[0]) // stride[0] + 1, (w - window[1]) // stride[1] + 1
  ys = np.repeat(np.arange(rows) * stride[0], cols)
  xs = np.tile(np.arange(cols) * stride[1], rows)
  size = _chunk_size(chunk_size, rows * cols, images)
  parts = [_occlusion_chunk(model, images, fill_img, classes, neuron,
                            tuple(int(v) for v in window), bool(probabilities),
                            jnp.asarray(ys[lo:hi]), jnp.asarray(xs[lo:hi]))
           for lo, hi in _chunks(rows * cols, size)]
  out = jnp.concatenate(parts, axis=0)  # [positions, N]
  return out.T.reshape(images.shape[0], rows, cols)


