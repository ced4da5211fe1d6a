"""Gradient attributions: saliency (Simonyan et al. 2014), deconvnet (Zeiler &
Fergus 2014), guided backprop (Springenberg et al. 2015), SmoothGrad (Smilkov et
al. 2017) and integrated gradients (Sundararajan et al. 2017)."""

import functools
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from cnnviz_jax import _checks as checks
from cnnviz_jax.attribution._common import (
    RULES, Targets, _check_images, _chunk_size, _chunks, _grad, _parse_targets,
    _scores, _tile)

Array = jax.Array

def gradient(model, images: Array, targets: Targets, *,
             rule: str = "vanilla") -> Array:
  """d target score / d image, with the ReLU backward pass chosen by `rule`.

  Args:
    model: a `Model`.
    images: float32 `[N, H, W, 3]` RGB in [0, 1].
    targets: int `[N]` classes or a neuron spec.
    rule: "vanilla" (the gradient), "guided" (guided backprop) or "deconvnet".

  Returns:
    float32 `[N, H, W, 3]`, with respect to the [0, 1] image.
  """
  if rule not in RULES:
    raise ValueError(f"unknown rule {rule!r}; valid: {', '.join(RULES)}.")
  _check_images(model, images)
  classes, neuron = _parse_targets(model, images, targets)
  return _grad(model, images, classes, neuron, rule)[1]


def saliency(model, images: Array, targets: Targets) -> Array:
  """Vanilla gradient (Simonyan et al. 2014); Captum `Saliency(abs=False)`.

  Args:
    model: a `Model`.
    images: float32 `[N, H, W, 3]` RGB in [0, 1].
    targets: int `[N]` classes or a neuron spec.

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


@functools.partial(jax.jit, static_argnames=("neuron", "rule"))
def _smooth_chunk(model, images, classes, neuron, rule, key, sample_ids, sigma):
  n = images.shape[0]
  c = sample_ids.shape[0]
  # Smilkov et al. 2017 section 3: noise std relative to each input's range.
  span = images.max(axis=(1, 2, 3)) - images.min(axis=(1, 2, 3))
  noise = jax.vmap(lambda s: jax.random.normal(
      jax.random.fold_in(key, s), images.shape, images.dtype))(sample_ids)
  noisy = images[None] + sigma * span[None, :, None, None, None] * noise
  _, g = _grad(model, noisy.reshape(c * n, *images.shape[1:]),
               _tile(classes, c), neuron, rule)
  g = g.reshape(c, *images.shape)
  return g.sum(0), (g * g).sum(0)


SMOOTHGRAD_VARIANTS = ("mean", "squared", "vargrad")


def smoothgrad(model, images: Array, targets: Targets, *, key: Array,
               samples: int = 50, sigma: float = 0.15, rule: str = "vanilla",
               variant: str = "mean", chunk_size: Optional[int] = None) -> Array:
  """SmoothGrad (Smilkov et al. 2017): gradients averaged over noisy copies.

  Args:
    model: a `Model`.
    images: float32 `[N, H, W, 3]` RGB in [0, 1].
    targets: int `[N]` classes or a neuron spec.
    key: PRNG key; sample `s` uses `fold_in(key, s)`, so results do not depend
      on `chunk_size`.
    samples: noisy copies per image (paper: 50).
    sigma: noise standard deviation relative to each image's value range
      (max - min); the paper recommends 10-20%.
    rule: the gradient underneath: "vanilla", "guided" or "deconvnet".
    variant: "mean" (SmoothGrad), "squared" (mean of squared gradients,
      SmoothGrad-SQ of Hooker et al. 2019) or "vargrad" (their variance,
      Adebayo et al. 2018).
    chunk_size: samples per network call (default: bounded pixel count).

  Returns:
    float32 `[N, H, W, 3]`.
  """
  if rule not in RULES:
    raise ValueError(f"unknown rule {rule!r}; valid: {', '.join(RULES)}.")
  if variant not in SMOOTHGRAD_VARIANTS:
    raise ValueError(f"unknown variant {variant!r}; valid: "
                     f"{', '.join(SMOOTHGRAD_VARIANTS)}.")
  if not isinstance(samples, (int, np.integer)) or samples < 1:
    raise ValueError(f"samples must be a positive int; got {samples!r}.")
  checks.check_positive(sigma, "sigma", allow_zero=True)
  _check_images(model, images)
  classes, neuron = _parse_targets(model, images, targets)
  size = _chunk_size(chunk_size, samples, images)
  total, total_sq = 0.0, 0.0
  for lo, hi in _chunks(samples, size):
    s, sq = _smooth_chunk(model, images, classes, neuron, rule, key,
                          jnp.arange(lo, hi), jnp.float32(sigma))
    total, total_sq = total + s, total_sq + sq
  mean = total / samples
  if variant == "mean":
    return mean
  if variant == "squared":
    return total_sq / samples
  return jnp.maximum(total_sq / samples - mean * mean, 0.0)


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
  if not isinstance(steps, (int, np.integer)) or steps < min_steps:
    raise ValueError(f"steps must be an int >= {min_steps} for {method}; got "
                     f"{steps!r}.")
  n = int(steps)
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


@functools.partial(jax.jit, static_argnames=("neuron", "rule"))
def _ig_chunk(model, images, baselines, classes, neuron, rule, alphas, weights):
  n, c = images.shape[0], alphas.shape[0]
  x = baselines[None] + alphas[:, None, None, None, None] * (images - baselines)[None]
  _, g = _grad(model, x.reshape(c * n, *images.shape[1:]), _tile(classes, c),
               neuron, rule)
  return jnp.tensordot(weights, g.reshape(c, *images.shape), axes=1)


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
    targets: int `[N]` classes or a neuron spec.
    baselines: None (black, as Captum), a float, or an array broadcastable to
      `images` in [0, 1].
    steps: integration points.
    method: one of `IG_METHODS`.
    rule: gradient rule (see `gradient`); "vanilla" is integrated gradients.
    chunk_size: integration points per network call (default: bounded pixel
      count); the result does not depend on it.

  Returns:
    `IGResult(attributions [N, H, W, 3], residual [N], delta [N])`; it
    unpacks as a tuple.
  """
  if rule not in RULES:
    raise ValueError(f"unknown rule {rule!r}; valid: {', '.join(RULES)}.")
  alphas, weights = ig_steps(steps, method)
  _check_images(model, images)
  classes, neuron = _parse_targets(model, images, targets)
  if baselines is None:
    baselines = jnp.zeros_like(images)
  else:
    baselines = jnp.broadcast_to(jnp.asarray(baselines, jnp.float32), images.shape)
    if checks.is_concrete(baselines):
      checks.check_images(baselines, name="baselines")
  size = _chunk_size(chunk_size, len(alphas), images)
  total = 0.0
  for lo, hi in _chunks(len(alphas), size):
    total = total + _ig_chunk(model, images, baselines, classes, neuron, rule,
                              jnp.asarray(alphas[lo:hi], jnp.float32),
                              jnp.asarray(weights[lo:hi], jnp.float32))
  attributions = total * (images - baselines)
  ends = _scores(model, jnp.concatenate([images, baselines]), _tile(classes, 2),
                 neuron, False)
  delta = ends[:images.shape[0]] - ends[images.shape[0]:]
  residual = attributions.sum(axis=(1, 2, 3)) - delta
  return IGResult(attributions, residual, delta)


