"""Gradient attributions: saliency (Simonyan et al. 2014), deconvnet (Zeiler &
Fergus 2014), guided backprop (Springenberg et al. 2015), SmoothGrad (Smilkov et
al. 2017) and integrated gradients (Sundararajan et al. 2017)."""

import functools
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from cnnviz_jax import _checks as checks
from cnnviz_jax._chunks import equal_chunks
from cnnviz_jax.attribution._common import (
    Targets, _check_count, _check_images, _check_rule, _chunk_size,
    _grad, _grad_copies, _scores, target_objective)

Array = jax.Array


def gradient(model, images: Array, targets: Targets, *,
             rule: str = "vanilla") -> Array:
  """d target score / d image, with the ReLU backward pass chosen by `rule`.

  Args:
    model: a `Model`.
    images: float32 `[N, H, W, 3]` RGB in [0, 1].
    targets: int `[N]` classes, a neuron spec or an `Objective`.
    rule: "vanilla" (the gradient), "guided" (guided backprop) or "deconvnet".

  Returns:
    float32 `[N, H, W, 3]`, with respect to the [0, 1] image.
  """
  _check_rule(rule)
  _check_images(model, images)
  objective = target_objective(model, images, targets)
  return _grad(model, images, objective, rule)[1]


def saliency(model, images: Array, targets: Targets) -> Array:
  """Vanilla gradient (Simonyan et al. 2014); Captum `Saliency(abs=False)`.

  Args:
    model: a `Model`.
    images: float32 `[N, H, W, 3]` RGB in [0, 1].
    targets: int `[N]` classes, a neuron spec or an `Objective`.

  Returns:
    float32 `[N, H, W, 3]`; `heatmap(...)` gives Simonyan's max |.| map.
  """
  return gradient(model, images, targets, rule="vanilla")


def guided_backprop(model, images: Array, targets: Targets) -> Array:
  """Guided backpropagation (Springenberg et al. 2015): a `custom_vjp` ReLU in
  every relu layer. Same shapes as `saliency`; Captum `GuidedBackprop`."""
  return gradient(model, images, targets, rule="guided")


def deconvnet(model, images: Array, targets: Targets) -> Array:
  """Deconvnet backward pass (Zeiler & Fergus 2014). Same shapes as
  `saliency`; Captum `Deconvolution`."""
  return gradient(model, images, targets, rule="deconvnet")


@functools.partial(jax.jit, static_argnames=("rule",))
def _smooth_chunk(model, images, objective, rule, key, sample_ids, valid, sigma):
  # Smilkov et al. 2017 section 3: noise std relative to each input's range.
  span = images.max(axis=(1, 2, 3)) - images.min(axis=(1, 2, 3))
  noise = jax.vmap(lambda s: jax.random.normal(
      jax.random.fold_in(key, s), images.shape, images.dtype))(sample_ids)
  noisy = images[None] + sigma * span[None, :, None, None, None] * noise
  g = _grad_copies(model, noisy, objective, rule)
  g = jnp.where(valid[:, None, None, None, None], g, 0.0)  # padding: 0
  return g.sum(0), (g * g).sum(0)


SMOOTHGRAD_VARIANTS = ("mean", "squared", "vargrad")


def smoothgrad(model, images: Array, targets: Targets, *, key: Array,
               samples: int = 50, sigma: float = 0.15, rule: str = "vanilla",
               variant: str = "mean", chunk_size: Optional[int] = None) -> Array:
  """SmoothGrad (Smilkov et al. 2017): gradients averaged over noisy copies.

  Args:
    model: a `Model`.
    images: float32 `[N, H, W, 3]` RGB in [0, 1].
    targets: int `[N]` classes, a neuron spec or an `Objective`.
    key: PRNG key (required); sample `s` uses `fold_in(key, s)`, so results
      do not depend on `chunk_size`.
    samples: noisy copies per image (paper: 50).
    sigma: noise standard deviation relative to each image's value range
      (max - min); the paper recommends 10-20%.
    rule: the gradient underneath: "vanilla", "guided" or "deconvnet".
    variant: "mean" (SmoothGrad), "squared" (mean of squared gradients,
      SmoothGrad-SQ of Hooker et al. 2019) or "vargrad" (their variance,
      Adebayo et al. 2018).
    chunk_size: at most this many samples per network call (default: bounded
      pixel count).

  Returns:
    float32 `[N, H, W, 3]`.
  """
  checks.check_key(key)
  _check_rule(rule)
  if variant not in SMOOTHGRAD_VARIANTS:
    raise ValueError(f"unknown variant {variant!r}; valid: "
                     f"{', '.join(SMOOTHGRAD_VARIANTS)}.")
  samples = _check_count(samples, "samples")
  _check_sigma(sigma)
  _check_images(model, images)
  objective = target_objective(model, images, targets)
  if images.shape[0] == 0:
    return jnp.zeros_like(images)
  size = _chunk_size(chunk_size, samples, images)
  total, total_sq = 0.0, 0.0
  for ids, valid in equal_chunks(samples, size):
    s, sq = _smooth_chunk(model, images, objective, rule, key, jnp.asarray(ids),
                          jnp.asarray(valid), jnp.float32(sigma))
    total, total_sq = total + s, total_sq + sq
  mean = total / samples
  if variant == "mean":
    return mean
  if variant == "squared":
    return total_sq / samples
  return jnp.maximum(total_sq / samples - mean * mean, 0.0)


def _check_sigma(sigma) -> None:
  if checks.is_concrete(sigma):
    s = np.asarray(sigma)
    if s.ndim or s.dtype.kind not in "iuf" or not np.isfinite(s) or s < 0:
      raise ValueError(f"sigma must be a finite number >= 0 (a fraction of "
                       f"each image's value range); got {sigma!r}.")


# --------------------------------------------------------------------------
# Integrated gradients.

IG_METHODS = ("riemann_left", "riemann_right", "riemann_middle",
              "riemann_trapezoid", "gausslegendre")


def ig_steps(steps: int, method: str = "gausslegendre"):
  """Integration points `alphas` in [0, 1] and weights, as Captum computes them.

  Args:
    steps: number of points (> 1 for Riemann rules, > 0 for Gauss-Legendre).
    method: one of `IG_METHODS` (Captum's names).

  Returns:
    `(alphas, weights)`, float64 numpy `[steps]`.
  """
  if method not in IG_METHODS:
    raise ValueError(f"unknown integration method {method!r}; valid: "
                     f"{', '.join(IG_METHODS)}.")
  min_steps = 1 if method == "gausslegendre" else 2
  n = _check_count(steps, f"steps for {method}", min_steps)
  if method == "gausslegendre":
    # Captum `gauss_legendre_builders`: numpy's nodes on [-1, 1] mapped to [0, 1].
    x, w = np.polynomial.legendre.leggauss(n)
    return 0.5 * (1 + x), 0.5 * w
  weights = np.full(n, 1.0 / n)
  # Captum builds the Riemann points with float32 `torch.linspace`; the same
  # float32 linspace here keeps the points bit-identical.
  lo, hi = {"left": (0.0, 1 - 1 / n), "right": (1 / n, 1.0),
            "middle": (1 / (2 * n), 1 - 1 / (2 * n)),
            "trapezoid": (0.0, 1.0)}[method.split("_")[1]]
  alphas = _linspace32(lo, hi, n)
  if method == "riemann_trapezoid":
    weights[0] /= 2
    weights[-1] /= 2
  return alphas, weights


def _linspace32(lo: float, hi: float, n: int) -> np.ndarray:
  """torch.linspace(lo, hi, n) in float32 (computed from both ends, as torch)."""
  step = np.float32((np.float32(hi) - np.float32(lo)) / (n - 1))
  i = np.arange(n)
  half = n // 2
  out = np.where(i < half, np.float32(lo) + step * i.astype(np.float32),
                 np.float32(hi) - step * (n - 1 - i).astype(np.float32))
  return out.astype(np.float32).astype(np.float64)


@functools.partial(jax.jit, static_argnames=("rule",))
def _ig_chunk(model, images, baselines, objective, rule, alphas, weights):
  x = baselines[None] + alphas[:, None, None, None, None] * (images - baselines)[None]
  g = _grad_copies(model, x, objective, rule)
  return jnp.tensordot(weights, g, axes=1)


class IGResult(NamedTuple):
  """Integrated gradients and their completeness residual.

  Attributes:
    attributions: float32 `[N, H, W, 3]`.
    residual: float32 `[N]`, sum of attributions - (f(x) - f(baseline));
      small relative to `delta` when the integral is accurate.
    delta: float32 `[N]`, f(x) - f(baseline).
  """
  attributions: Array
  residual: Array
  delta: Array


def integrated_gradients(model, images: Array, targets: Targets, *,
                         baselines=None, steps: int = 50,
                         method: str = "gausslegendre", rule: str = "vanilla",
                         chunk_size: Optional[int] = None) -> IGResult:
  """Integrated gradients (Sundararajan et al. 2017); Captum's
  `IntegratedGradients` with the same `method` names and points.

  Args:
    model: a `Model`.
    images: float32 `[N, H, W, 3]` RGB in [0, 1].
    targets: int `[N]` classes, a neuron spec or an `Objective`.
    baselines: None (black, as Captum), a float, or an array broadcastable to
      `images` in [0, 1].
    steps: integration points.
    method: one of `IG_METHODS`.
    rule: gradient rule (see `gradient`); "vanilla" is integrated gradients.
    chunk_size: at most this many integration points per network call
      (default: bounded pixel count); the result does not depend on it.

  Returns:
    `IGResult(attributions [N, H, W, 3], residual [N], delta [N])`; it
    unpacks as a tuple.
  """
  _check_rule(rule)
  alphas, weights = ig_steps(steps, method)
  _check_images(model, images)
  objective = target_objective(model, images, targets)
  baselines = _baselines(baselines, images)
  size = _chunk_size(chunk_size, len(alphas), images)
  if images.shape[0] == 0:
    empty = jnp.zeros((0,), jnp.float32)
    return IGResult(jnp.zeros_like(images), empty, empty)
  total = 0.0
  for ids, valid in equal_chunks(len(alphas), size):  # padding: weight 0
    total = total + _ig_chunk(model, images, baselines, objective, rule,
                              jnp.asarray(alphas[ids], jnp.float32),
                              jnp.asarray(weights[ids] * valid, jnp.float32))
  attributions = total * (images - baselines)
  delta = _scores(model, images, objective) - _scores(model, baselines, objective)
  residual = attributions.sum(axis=(1, 2, 3)) - delta
  return IGResult(attributions, residual, delta)


def _baselines(baselines, images) -> Array:
  """IG baselines, checked before any computation: `[N, H, W, 3]` in [0, 1]."""
  if baselines is None:
    return jnp.zeros_like(images)
  shape = np.shape(baselines)
  try:
    ok = np.broadcast_shapes(shape, images.shape) == tuple(images.shape)
  except ValueError:
    ok = False
  if not ok:
    raise ValueError("baselines must be None, a float or an array broadcastable"
                     f" to images {tuple(images.shape)} ([N, H, W, 3], or e.g. "
                     f"[H, W, 3] or [3]); got shape {shape}.")
  if checks.is_concrete(baselines) and np.asarray(baselines).dtype.kind not in "iuf":
    raise ValueError(f"baselines must be numeric; got {baselines!r}.")
  baselines = jnp.broadcast_to(jnp.asarray(baselines, jnp.float32), images.shape)
  if checks.is_concrete(baselines):
    checks.check_images(baselines, name="baselines")
  return baselines
