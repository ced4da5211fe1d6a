"""Feature inversion (Mahendran & Vedaldi 2015)."""


import jax
import jax.numpy as jnp

from cnnviz_jax import _checks as checks
from cnnviz_jax import objectives as O
from cnnviz_jax.synthesis import engine as opt
from cnnviz_jax.synthesis import param as P
from cnnviz_jax.synthesis import transforms as T
from cnnviz_jax import objectives as R  # priors (l2, l1, tv) live in objectives

Array = jax.Array


def invert(model, images: Array, layer: str, *, key: Array, steps: int = 200,
           tv: float = 0.05, beta: float = 2.0, l2: float = 0.0,
           learning_rate: float = 0.05, jitter: int = 0,
           return_result: bool = False):
  """Feature inversion (Mahendran & Vedaldi 2015): from noise, find images
  whose `layer` activation matches that of `images`, with a TV^beta prior.

  Args:
    images: float32 `[N, H, W, 3]` in [0, 1].
    layer: any tap name (`model.layer_names`), e.g. "relu3_2" or "fc7".
    tv, beta, l2: regularizer weights (>= 0) and TV exponent (>= 1).

  Returns:
    reconstructions float32 `[N, H, W, 3]` in [0, 1] (the `Result` when
    `return_result`).
  """
  checks.check_images(images, min_size=model.min_size)
  layer = model.resolve(layer)
  for k, v in (("tv", tv), ("l2", l2), ("jitter", jitter)):
    checks.check_positive(v, k, allow_zero=True)
  _, acts = model.apply(model.params, images, taps=(layer,), logits=False)
  obj = O.feature_match(layer, acts[layer])
  if tv:
    obj = obj - tv * R.tv(beta)
  if l2:
    obj = obj - l2 * R.l2()
  n, h, w, _ = images.shape
  res = opt.optimize(model, obj, P.pixels(n, (h, w)), key=key, steps=steps,
                     learning_rate=learning_rate,
                     transform=T.jitter(jitter) if jitter else None)
  return res if return_result else res.images


def reconstruction_error(images: Array, recon: Array) -> Array:
  """Per-image relative pixel error ||x - x'|| / ||x - mean(x)|| `[N]`."""
  d = (recon - images).reshape(images.shape[0], -1)
  ref = (images - images.mean(axis=(1, 2, 3), keepdims=True)).reshape(images.shape[0], -1)
  return jnp.linalg.norm(d, axis=1) / (jnp.linalg.norm(ref, axis=1) + 1e-8)
