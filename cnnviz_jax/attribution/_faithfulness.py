"""Faithfulness of attribution maps: deletion and insertion curves.

Petsiuk et al. 2018 (RISE), section 4.1: remove pixels from the image in the
order a heatmap ranks them (deletion: a sharp drop of the class probability,
low area under the curve, is good) or add them to a blurred canvas in that
order (insertion: a sharp rise, high area, is good). A random ordering is the
reference a useful map must beat.

    maps = attribution.heatmap(attribution.saliency(model, images, labels))
    curve = attribution.deletion(model, images, labels, maps)
    curve.auc                                                   # [N]

`faithfulness` gives both AUCs for several maps at once.
"""

import functools
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from cnnviz_jax import _checks as checks
from cnnviz_jax._chunks import equal_chunks
from cnnviz_jax.attribution._common import (
    Targets, _check_count, _check_images, _chunk_size, _score_copies,
    fill_images, target_objective)
from cnnviz_jax.image import resize as upsample
from cnnviz_jax.viz._heatmaps import heatmap

Array = jax.Array


class Curve(NamedTuple):
  """Attributes:
    fractions: float32 `[K + 1]`, fraction of pixels deleted / inserted.
    scores: float32 `[N, K + 1]`, the target's score at each fraction.
    auc: float32 `[N]`, trapezoidal area under `scores` over `fractions`.
  """
  fractions: Array
  scores: Array
  auc: Array


@functools.partial(jax.jit, static_argnames=("steps",))
def _curve_chunk(model, start, end, rank, objective, steps, ks, units):
  """Scores `[C, N]` with the `round(k / steps * units)` top-ranked units
  (pixels or patches) taken from `end` and the rest from `start`, for each k
  in `ks`."""
  count = jnp.round(ks.astype(jnp.float32) / steps * units)
  mask = (rank[None] < count[:, None, None, None])[..., None]
  return _score_copies(model, jnp.where(mask, end[None], start[None]), objective)


def _curve(model, images, targets, heatmaps, start, end, steps, probabilities,
           patch, chunk_size) -> Curve:
  _check_images(model, images)
  objective = target_objective(model, images, targets,
                               probabilities=bool(probabilities))
  steps = _check_count(steps, "steps")
  heatmaps = jnp.asarray(heatmaps, jnp.float32)
  if heatmaps.ndim == 4:
    heatmaps = heatmap(heatmaps)
  if heatmaps.ndim != 3 or heatmaps.shape[0] != images.shape[0]:
    raise ValueError(f"heatmaps must be [N, h, w] with N = {images.shape[0]}; "
                     f"got shape {heatmaps.shape}.")
  if checks.is_concrete(heatmaps) and not bool(jnp.all(jnp.isfinite(heatmaps))):
    # NaN has no place in a ranking: the order, hence the curve, would be
    # arbitrary.
    raise ValueError("heatmaps contain NaN or infinite values.")
  if heatmaps.shape[1:] != images.shape[1:3]:
    heatmaps = upsample(heatmaps, images.shape[1:3], "bilinear")
  n, h, w = heatmaps.shape
  if (isinstance(patch, (bool, np.bool_)) or not isinstance(patch, (int, np.integer))
      or patch < 1 or h % patch or w % patch):
    raise ValueError(f"patch must be a positive int dividing the image size "
                     f"{h}x{w}; got {patch!r}.")
  fractions = jnp.linspace(0.0, 1.0, steps + 1)
  size = _chunk_size(chunk_size, steps + 1, images)
  if n == 0:
    return Curve(fractions, jnp.zeros((0, steps + 1)), jnp.zeros((0,)))
  # Units deleted together: patch x patch blocks scored by their mean.
  units = heatmaps.reshape(n, h // patch, patch, w // patch, patch).mean(axis=(2, 4))
  flat = units.reshape(n, -1)
  # rank[i, u]: position of unit u in descending order (stable for ties).
  order = jnp.argsort(-flat, axis=1, stable=True)
  rank = jnp.argsort(order, axis=1).reshape(units.shape)
  rank = jnp.repeat(jnp.repeat(rank, patch, axis=1), patch, axis=2)
  parts = [_curve_chunk(model, start, end, rank, objective, steps,
                        jnp.asarray(ids), flat.shape[1])
           for ids, _ in equal_chunks(steps + 1, size)]
  scores = jnp.concatenate(parts, axis=0)[:steps + 1].T
  auc = ((scores[:, 1:] + scores[:, :-1]) / 2).sum(axis=1) / steps
  return Curve(fractions, scores, auc)


def deletion(model, images: Array, targets: Targets, heatmaps: Array, *,
             steps: int = 32, patch: int = 1, fill: Any = "zeros",
             blur_sigma: float = 4.0, probabilities: bool = True,
             chunk_size: Optional[int] = None) -> Curve:
  """Deletion curve: pixels replaced by `fill` in decreasing heatmap order.

  Args:
    model: a `Model`.
    images: float32 `[N, H, W, 3]` RGB in [0, 1].
    targets: int `[N]` classes, a neuron spec or an `Objective`.
    heatmaps: `[N, h, w]` (upsampled bilinearly when smaller) or
      attributions `[N, H, W, 3]` (reduced with `heatmap`); higher = more
      important.
    steps: curve points beyond the start (units per step = units / steps).
    patch: delete in `patch x patch` blocks ranked by their mean heatmap
      value (1: single pixels, as Petsiuk et al. at 224x224). On small images
      scattered single-pixel deletion is itself destructive and favours a
      random order; blocks compare orderings at one granularity.
    fill: what deleted pixels become: "zeros" (Petsiuk et al.), "mean",
      "blur", a float or an array (see `fill_images`).
    blur_sigma: Gaussian std in pixels for "blur", > 0.
    probabilities: class targets: softmax probability (Petsiuk et al.).
    chunk_size: at most this many curve points per network call.

  Returns:
    `Curve`; lower `auc` = more faithful.
  """
  _check_images(model, images)
  fill_img = fill_images(model, images, fill, blur_sigma=blur_sigma)
  return _curve(model, images, targets, heatmaps, images, fill_img, steps,
                probabilities, patch, chunk_size)


def insertion(model, images: Array, targets: Targets, heatmaps: Array, *,
              steps: int = 32, patch: int = 1, fill: Any = "blur",
              blur_sigma: float = 4.0, probabilities: bool = True,
              chunk_size: Optional[int] = None) -> Curve:
  """Insertion curve: pixels of the image put onto a `fill` canvas (a blurred
  copy, as Petsiuk et al.) in decreasing heatmap order. Arguments as
  `deletion`; higher `auc` = more faithful."""
  _check_images(model, images)
  fill_img = fill_images(model, images, fill, blur_sigma=blur_sigma)
  return _curve(model, images, targets, heatmaps, fill_img, images, steps,
                probabilities, patch, chunk_size)


def random_heatmaps(images: Array, *, key: Array) -> Array:
  """Uniform random maps `[N, H, W]`: the reference ordering."""
  checks.check_images(images)
  checks.check_key(key)
  return jax.random.uniform(key, images.shape[:3])


def faithfulness(model, images: Array, targets: Targets, maps: dict, *, key: Array,
                 steps: int = 16, patch: int = 4, fill: Any = "blur") -> dict:
  """Mean deletion and insertion AUC of each heatmap, and of a random map.

  Args:
    model: a `Model`.
    images: float32 `[N, H, W, 3]` RGB in [0, 1].
    targets: int `[N]` classes, a neuron spec or an `Objective`.
    maps: name -> heatmap `[N, h, w]` (as `attribution.explain` returns).
    key: PRNG key of the random reference map.
    steps, patch: as `deletion`.
    fill: what deleted pixels become. "blur" by default: on small images black
      single pixels act like adversarial noise and make any ordering look
      worse than random.

  Returns:
    `{"deletion_auc": {name: float}, "insertion_auc": {name: float}}` with the
    names of `maps` plus "random"; each AUC in [0, 1] for probabilities.
  """
  checks.check_key(key)
  _check_images(model, images)
  if images.shape[0] == 0:
    raise ValueError("faithfulness averages over images; got none (N = 0).")
  reference = dict(maps, random=random_heatmaps(images, key=key))
  kw = dict(steps=steps, patch=patch, fill=fill)
  return {
      "deletion_auc": {name: float(deletion(model, images, targets, m, **kw).auc.mean())
                       for name, m in reference.items()},
      "insertion_auc": {name: float(insertion(model, images, targets, m, **kw).auc.mean())
                        for name, m in reference.items()},
  }
