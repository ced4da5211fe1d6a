"""Feature inversion (Mahendran & Vedaldi 2015)."""

import jax
import jax.numpy as jnp

from cnnviz_jax import _checks as checks
from cnnviz_jax import objectives as O
from cnnviz_jax.synthesis import engine as opt
from cnnviz_jax.synthesis._recipes import _param, recipe, setup

Array = jax.Array


def inversion_setup(model, images: Array, layer: str, **overrides):
  """The recipe, setup and parameterization `invert` optimizes: minus the
  normalized distance to the `layer` activations of `images`, with the
  "mahendran" recipe (a TV^2 prior, weight 0.05) and `overrides`.

  Returns `(setup, param)`.
  """
  checks.check_images(images, min_size=model.min_size)
  layer = model.resolve(layer)
  r = recipe("mahendran", **overrides)
  _, acts = model.apply(model.params, images, taps=(layer,), logits=False)
  n, h, w, _ = images.shape
  return setup(O.feature_match(layer, acts[layer]), r), _param(r, n, (h, w))


def invert(model, images: Array, layer: str, *, key: Array, steps: int = 200,
           **overrides) -> Array:
  """Feature inversion (Mahendran & Vedaldi 2015): from noise, find images
  whose `layer` activation matches that of `images`, with a TV^beta prior.

  Args:
    images: float32 `[N, H, W, 3]` in [0, 1].
    layer: any tap name (`model.layer_names`), e.g. "relu3_2" or "fc7".
    key: PRNG key.
    steps: optimization steps (>= 1).
    **overrides: recipe entries (`synthesis.RECIPES["mahendran"]`): `tv`
      (0.05), `tv_beta` (2), `l2`, `l1`, `jitter`, `learning_rate` (0.05), ...

  Returns:
    reconstructions float32 `[N, H, W, 3]` in [0, 1]
    (`invert_result` returns the engine's `Result` with the history).
  """
  return invert_result(model, images, layer, key=key, steps=steps,
                       **overrides).images


def invert_result(model, images: Array, layer: str, *, key: Array,
                  steps: int = 200, **overrides) -> opt.Result:
  """`invert`, returning the engine's `Result` (images, params, history)."""
  s, p = inversion_setup(model, images, layer, **overrides)
  return opt.optimize(model, s, p, key=key, steps=steps)


def reconstruction_error(images: Array, recon: Array) -> Array:
  """Per-image relative pixel error ||x - x'|| / ||x - mean(x)|| `[N]`."""
  d = (recon - images).reshape(images.shape[0], -1)
  ref = (images - images.mean(axis=(1, 2, 3), keepdims=True)).reshape(images.shape[0], -1)
  # The floor keeps a flat image (zero spread) from dividing by zero.
  return jnp.linalg.norm(d, axis=1) / (jnp.linalg.norm(ref, axis=1) + 1e-8)
