"""DeepDream (Mordvintsev et al. 2015): amplify a layer's activations, with
octaves."""

from typing import Optional

import jax
import jax.numpy as jnp

from cnnviz_jax import _checks as checks
from cnnviz_jax import image
from cnnviz_jax import objectives as O
from cnnviz_jax.synthesis import engine as opt
from cnnviz_jax.synthesis import param as param_lib
from cnnviz_jax.synthesis import transforms as T

Array = jax.Array
# The roll range when none is given, as a fraction of the shorter side.
_ROLL_FRACTION = 1 / 16


def octave_sizes(hw: tuple[int, int], octaves: int, scale: float,
                 min_size: int) -> list[tuple[int, int]]:
  """Image sizes from smallest to `hw`, each `scale` times the previous; sizes
  below `min_size` are dropped."""
  sizes = []
  for o in range(octaves - 1, -1, -1):
    s = (round(hw[0] / scale ** o), round(hw[1] / scale ** o))
    if min(s) >= min_size and s not in sizes:
      sizes.append(s)
  return sizes or [tuple(hw)]


def multiscale(model, setup: opt.Setup, images: Array, *, key: Array,
               steps_per_octave: int, octaves: int = 4, octave_scale: float = 1.4,
               **kwargs) -> tuple[Array, list[dict]]:
  """Optimizes a pyramid of octaves, smallest first, carrying the detail up
  (DeepDream, Mordvintsev et al. 2015): at each size, the start is the input
  resized plus the upsampled detail found so far.

  Args:
    setup: a `Setup` whose step_ops (if any) do not depend on the image size.
    images: float32 `[N, H, W, 3]` in [0, 1].
    steps_per_octave: steps at each size.
    octaves: number of sizes (>= 1); octave_scale: ratio between sizes (> 1).
    **kwargs: passed to `engine.optimize` (optimizer, chunk, ...).

  Returns:
    `(images [N, H, W, 3], [history per octave])`; the output has the input's size.
  """
  checks.check_images(images, min_size=model.min_size)
  checks.check_key(key)
  if isinstance(octaves, bool) or not isinstance(octaves, int) or octaves < 1:
    raise ValueError(f"octaves must be an int >= 1; got {octaves!r}.")
  if not octave_scale > 1.0:
    raise ValueError(f"octave_scale must be > 1; got {octave_scale!r}.")
  n, h, w, _ = images.shape
  detail = None
  histories = []
  for o, hw in enumerate(octave_sizes((h, w), octaves, octave_scale, model.min_size)):
    base = image.resize(images, hw, "linear")
    detail = jnp.zeros_like(base) if detail is None else image.resize(detail, hw, "linear")
    start = jnp.clip(base + detail, 0.0, 1.0)
    res = opt.optimize(model, setup, param_lib.pixels(n, hw),
                   key=jax.random.fold_in(key, o), steps=steps_per_octave,
                   init=start, **kwargs)
    detail = res.images - base
    histories.append(res.history)
  # The last octave has the input's size: its result is the output.
  return res.images, histories


def deepdream(model, image: Array, layer: str, *, key: Array, octaves: int = 3,
              octave_scale: float = 1.4, steps: int = 10,
              learning_rate: float = 0.01, roll: Optional[int] = None) -> Array:
  """DeepDream (Mordvintsev et al. 2015): gradient ascent on half the squared
  activation of `layer` (gradient = activation), each step divided by its
  mean |g|, with a random circular shift and the clip to [0, 1], over
  `octaves` sizes with the detail carried up.

  Args:
    image: float32 `[H, W, 3]` or `[N, H, W, 3]` in [0, 1], any size >= the
      model's minimum.
    layer: tap name, e.g. "relu4_2" (VGG) or "relu3_2" (cifar_vgg).
    key: PRNG key (the shifts).
    octaves: number of sizes (>= 1); octave_scale: ratio between them (> 1).
    steps: steps per octave.
    learning_rate: pixel step per step (> 0; the original's 1.5 on a 0-255
      scale is about 0.006).
    roll: circular shift range in pixels (default 1/16 of the shorter
      side, at least 1; 0: none), which hides tiling seams.

  Returns:
    the dreamed image, same shape as `image` (`multiscale` also returns
    the per-octave histories).
  """
  single = getattr(image, "ndim", 0) == 3
  images = jnp.asarray(image)[None] if single else image
  checks.check_images(images, min_size=model.min_size)
  layer = model.resolve(layer)
  h, w = images.shape[1:3]
  r = max(1, int(min(h, w) * _ROLL_FRACTION)) if roll is None else roll
  setup = opt.Setup(O.layer_l2(layer), T.roll(r) if r else None,
                    learning_rate=learning_rate)
  out, _ = multiscale(
      model, setup, images, key=key, steps_per_octave=steps, octaves=octaves,
      octave_scale=octave_scale, optimizer=opt.make_optimizer("sgd", "mean_abs"))
  return out[0] if single else out
