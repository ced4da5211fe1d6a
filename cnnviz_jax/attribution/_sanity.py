"""Sanity checks for attribution methods (Adebayo et al. 2018)."""

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from cnnviz_jax import _checks as checks
from cnnviz_jax.attribution._common import Targets, _check_images, target_objective
from cnnviz_jax.models import core
from cnnviz_jax.viz._heatmaps import heatmap

Array = jax.Array

def rank_correlation(a, b) -> np.ndarray:
  """Spearman rank correlation per image between maps `[N, ...]`
  (`scipy.stats.spearmanr`; ties get average ranks). A constant map has no
  ranking: its correlation is 0.

  Returns:
    float64 numpy `[N]`.
  """
  a = np.asarray(a, np.float64).reshape(len(a), -1)
  b = np.asarray(b, np.float64).reshape(len(b), -1)
  if a.shape != b.shape:
    raise ValueError(f"maps must have the same shape; got {a.shape} and {b.shape}.")
  return np.asarray([
      0.0 if np.ptp(x) == 0 or np.ptp(y) == 0 else
      float(stats.spearmanr(x, y).statistic) for x, y in zip(a, b)])


class RandomizationResult(NamedTuple):
  """Attributes:
    layers: names of the randomized layers, top first (cascading: each entry
      has that layer and all above it randomized).
    correlations: float64 `[L, N]` rank correlation between original and
      randomized maps.
    maps: float32 `[L, N, ...]` the randomized maps; `original` `[N, ...]`.
  """
  layers: tuple
  correlations: np.ndarray
  maps: np.ndarray
  original: np.ndarray


def _param_layers(model) -> tuple[str, ...]:
  return tuple(l.name for l in model.layers if l.name in model.params)


def randomization_check(model, images: Array, targets: Targets,
                        method: Callable[..., Array], *, key: Array,
                        cascading: bool = True, absolute: bool = True,
                        reduce: str = "sum") -> RandomizationResult:
  """Model-parameter randomization test (Adebayo et al. 2018, section 3.1).

  Re-initializes the layers top (logits) down with the model's own
  initializers, recomputes the attribution with the randomized network and
  compares it with the original by rank correlation. A method that explains
  the model should decorrelate as more layers are randomized.

  Args:
    model: a `Model`.
    images: float32 `[N, H, W, 3]` RGB in [0, 1].
    targets: int `[N]` classes, a neuron spec or an `Objective`.
    method: `method(model, images, targets) -> [N, H, W, 3]` or `[N, h, w]`,
      e.g. `saliency` or `functools.partial(grad_cam, layer="relu4_1")`.
    key: PRNG key of the re-initialization.
    cascading: randomize cumulatively (True) or one layer at a time.
    absolute: compare absolute values (the paper reports both; absolute
      values discard sign flips, which randomization alone can cause).
    reduce: channel reduction for `[N, H, W, 3]` outputs (see `heatmap`).

  Returns:
    `RandomizationResult`.
  """
  checks.check_key(key)
  _check_images(model, images)
  target_objective(model, images, targets)
  fresh = core.init_params(model.layers, key, model.input_size)

  def as_map(a):
    a = heatmap(jnp.asarray(a), reduce) if jnp.ndim(a) == 4 else jnp.asarray(a)
    return np.asarray(jnp.abs(a) if absolute else a, np.float32)

  original = as_map(method(model, images, targets))
  names, corrs, maps = [], [], []
  params = dict(model.params)
  for name in reversed(_param_layers(model)):
    if not cascading:
      params = dict(model.params)
    params[name] = fresh[name]
    m = as_map(method(model.replace(params=params), images, targets))
    names.append(name)
    maps.append(m)
    corrs.append(rank_correlation(original, m))
  return RandomizationResult(tuple(names), np.stack(corrs), np.stack(maps),
                             original)


