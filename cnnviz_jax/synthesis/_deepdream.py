"""DeepDream (Mordvintsev et al. 2015): amplify a layer's activations, with
octaves."""

from typing import Optional

import jax
import jax.numpy as jnp

from cnnviz_jax import _checks as checks
from cnnviz_jax import objectives as O
from cnnviz_jax.synthesis import engine as opt
from cnnviz_jax.synthesis import transforms as T
from cnnviz_jax import objectives as R  # priors (l2, l1, tv) live in objectives

Array = jax.Array


def deepdream(model, image: Array, layer: str, *, key: Array, octaves: int = 3,
              octave_scale: float = 1.4, steps: int = 10, step_size: float = 0.01,
              jitter: Optional[int] = None, return_history: bool = False):
  """DeepDream (Mordvintsev et al. 2015): gradient ascent on half the squared
  activation of `layer` (gradient = activation), normalized by mean |g|, with a
  random roll and clipping, over `octaves` sizes with detail carried up.

  Args:
    image: float32 `[H, W, 3]` or `[N, H, W, 3]` in [0, 1], any size >= the
      model's minimum.
    layer: tap name, e.g. "relu4_2" (VGG) or "relu3_2" (cifar_vgg).
    steps: steps per octave; step_size: pixel step per step (the original's
      1.5 on a 0-255 scale is about 0.006).
    jitter: roll range in pixels (default 1/16 of the shorter side).

  Returns:
    the dreamed image, same shape as `image` (and the per-octave histories
    when `return_history`).
  """
  single = getattr(image, "ndim", 0) == 3
  images = jnp.asarray(image)[None] if single else image
  checks.check_images(images, min_size=model.min_size)
  layer = model.resolve(layer)
  checks.check_positive(step_size, "step_size")
  h, w = images.shape[1:3]
  j = max(1, min(h, w) // 16) if jitter is None else jitter
  checks.check_positive(j, "jitter", allow_zero=True)
  out, hist = opt.multiscale(
      model, O.layer_l2(layer), images, key=key, steps_per_octave=steps,
      octaves=octaves, octave_scale=octave_scale, optimizer="sgd",
      learning_rate=step_size, grad_norm="mean_abs",
      transform=T.roll(j) if j else None)
  out = out[0] if single else out
  return (out, hist) if return_history else out
