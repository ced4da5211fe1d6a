"""Multifaceted feature visualization (Nguyen et al. 2016, "Multifaceted
feature visualization: uncovering the different types of features learned by
each neuron in deep neural networks").

A class's images are clustered with k-means in a feature space (`fc7`); one
facet per cluster is optimized from the cluster's mean image. Maximizing the
class alone drives every facet to the same class-typical picture (measured on
the shipped model: the facets' mutual spread in `fc7` fell to 0.00-0.02 of
the class's). Each facet is therefore also held near its own cluster: a term
`anchor * feature_match(layer, centre_j)` rewards closeness to the cluster's
k-means centre in the clustering space (relative squared distance), and an
optional `diversity` term (Lucid's Gram diversity, Mordvintsev et al. 2018)
pushes the facets apart from one another. The class term is the
log-probability, which saturates once the class is certain, so the anchor
decides the rest of the image instead of an ever-growing logit.

`facet_separation` measures the result: the share of facets whose feature is
nearest to their own cluster's centre, and their mutual spread (mean pairwise
cosine distance) relative to that of all the class's images.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from sklearn import cluster

from cnnviz_jax import _checks as checks
from cnnviz_jax import objectives as O
from cnnviz_jax.synthesis._recipes import DEFAULT_RECIPE
from cnnviz_jax.synthesis._visualize import visualize

Array = jax.Array
# k-means++ restarts (scikit-learn's n_init): the best of several seedings
# avoids a poor local optimum at a cost that is nothing beside the synthesis.
_KMEANS_RESTARTS = 10
# Defaults measured on the shipped cifar_vgg (classes cat, horse, ship, seeds
# 0-2, `experiments/measure_facets.py`; figures in the README): at this
# weight 35 of 36 facets stay nearest their own centre and spread 0.29-0.75
# of the class, with class probability >= 0.999; without it (0) 9 of 36 (in
# every run all four facets are nearest one centre). A weight of 10 also
# works (cat, seed 0: 4 of 4, spread 0.39).
DEFAULT_ANCHOR = 1.0
DEFAULT_DIVERSITY = 0.0


class Multifaceted(NamedTuple):
  """Output of `multifaceted`: the engine's `Result` fields, then the
  clustering.

  Attributes:
    images: float32 `[k, H, W, 3]` in [0, 1], one facet per cluster.
    params: the parameterization's final parameters.
    history: `{"objective": [steps, k], "grad_norm": [steps, k]}`.
    means: float32 `[k, H, W, 3]`, each cluster's mean image (the starts).
    assignment: int32 `[N]`, the cluster of each input image.
    centres: float32 `[k, D]`, the k-means centres in the clustering layer
      (flattened).
  """
  images: Array
  params: Any
  history: dict
  means: Array
  assignment: Array
  centres: Array


def cluster_images(features: Array, k: int, *, key: Array) -> np.ndarray:
  """k-means (scikit-learn, k-means++ seeding from `key`) of `features`
  `[N, D]` into `k` <= N clusters; returns the assignment int32 `[N]`."""
  x = np.asarray(features, np.float64).reshape(features.shape[0], -1)
  if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= len(x):
    raise ValueError(f"k must be an int in [1, {len(x)}] (the number of images); "
                     f"got {k!r}.")
  checks.check_key(key)
  seed = int(jax.random.randint(key, (), 0, np.iinfo(np.int32).max))
  km = cluster.KMeans(n_clusters=int(k), n_init=_KMEANS_RESTARTS, random_state=seed)
  return km.fit_predict(x).astype(np.int32)


def _cluster_means(values: Array, assignment: Array, k: int) -> Array:
  """Per-cluster means of `values` `[N, ...]` -> `[k, ...]`."""
  onehot = jax.nn.one_hot(assignment, k)
  flat = values.reshape(values.shape[0], -1)
  means = onehot.T @ flat / jnp.maximum(onehot.sum(0), 1)[:, None]
  return means.reshape((k,) + values.shape[1:])


def multifaceted(model, images: Array, target: int, *, k: int, key: Array,
                 steps: int = 100, layer: str = "fc7",
                 anchor: float = DEFAULT_ANCHOR,
                 diversity: float = DEFAULT_DIVERSITY,
                 diversity_layer: str = "relu3_2",
                 recipe_name: str = DEFAULT_RECIPE, **overrides) -> Multifaceted:
  """Multifaceted feature visualization: one facet per k-means cluster of a
  class's images, each started from its cluster's mean image and held near
  its cluster (see the module doc).

  The objective of facet `j` is `log p(target | x) + anchor *
  feature_match(layer, centre_j) + diversity * diversity(diversity_layer)`
  plus the recipe's priors.

  Args:
    model: a Model.
    images: float32 `[N, H, W, 3]` in [0, 1], images of class `target`.
    target: class index.
    k: number of facets, in [1, N].
    key: PRNG key (split between the clustering and the synthesis).
    steps: optimization steps (>= 1).
    layer: the clustering space (Nguyen et al. use `fc7`), also the space of
      the anchor.
    anchor: weight >= 0 of the closeness to the facet's own centre (0: the
      class alone, which collapses the facets).
    diversity: weight >= 0 of the Gram diversity across facets.
    diversity_layer: a conv layer for the diversity term.
    recipe_name, **overrides: as in `visualize`.

  Returns:
    A `Multifaceted` (images, params, history, means, assignment, centres).
  """
  checks.check_images(images, min_size=model.min_size)
  checks.check_classes(np.asarray([target]), model.num_classes, name="target")
  checks.check_positive(anchor, "anchor", allow_zero=True)
  checks.check_positive(diversity, "diversity", allow_zero=True)
  layer = model.resolve(layer)
  _, acts = model.apply(model.params, images, taps=(layer,), logits=False)
  feats = acts[layer].reshape(images.shape[0], -1)
  kkey, okey = jax.random.split(key)
  assign = jnp.asarray(cluster_images(feats, k, key=kkey))
  means = _cluster_means(images, assign, k)
  centres = _cluster_means(feats, assign, k)
  objective = O.class_prob(int(target), log=True)
  if anchor:
    objective = objective + anchor * O.feature_match(
        layer, centres.reshape((k,) + acts[layer].shape[1:]))
  if diversity and k > 1:
    objective = objective + diversity * O.diversity(model.resolve(diversity_layer))
  res = visualize(model, objective, k, key=okey, steps=steps,
                  size=images.shape[1:3], recipe_name=recipe_name, init=means,
                  **overrides)
  return Multifaceted(res.images, res.params, res.history, means, assign, centres)


def _mean_pairwise_cosine_distance(x: np.ndarray) -> float:
  x = x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12)
  sim = x @ x.T
  n = len(x)
  return float((n * n - sim.sum()) / (n * (n - 1)))


def facet_separation(model, facets: Array, images: Array, assignment: Array, *,
                     layer: str = "fc7") -> dict:
  """How much facets differ, measured in the clustering space.

  Args:
    model: a Model.
    facets: float32 `[k, H, W, 3]` in [0, 1]; facet `j` stands for cluster `j`.
    images: float32 `[N, H, W, 3]` in [0, 1], the clustered images.
    assignment: int `[N]` in [0, k), each image's cluster.
    layer: the clustering layer.

  Returns:
    `{"own_centre": [k] bools, facet j's feature is nearer (Euclidean, as
    k-means) to centre j than to any other; "own_centre_share": their mean;
    "spread": mean pairwise cosine distance of the facets' features;
    "class_spread": the same over all N images; "spread_ratio": spread /
    class_spread}`.
  """
  checks.check_images(facets, name="facets", min_size=model.min_size)
  checks.check_images(images, min_size=model.min_size)
  k = facets.shape[0]
  assignment = np.asarray(assignment)
  if assignment.shape != (images.shape[0],) or assignment.min() < 0 or (
      assignment.max() >= k):
    raise ValueError(f"assignment must be [{images.shape[0]}] ints in [0, {k}); "
                     f"got shape {assignment.shape}, range "
                     f"[{assignment.min()}, {assignment.max()}].")
  if k < 2:
    raise ValueError("facet_separation needs k >= 2 facets.")
  layer = model.resolve(layer)

  def feats(x):
    _, a = model.apply(model.params, x, taps=(layer,), logits=False)
    return np.asarray(a[layer], np.float64).reshape(x.shape[0], -1)

  f, g = feats(facets), feats(images)
  centres = np.stack([g[assignment == j].mean(0) for j in range(k)])
  d = np.linalg.norm(f[:, None] - centres[None], axis=-1)
  own = (d.argmin(1) == np.arange(k))
  spread = _mean_pairwise_cosine_distance(f)
  class_spread = _mean_pairwise_cosine_distance(g)
  return {"own_centre": own.tolist(), "own_centre_share": float(own.mean()),
          "spread": spread, "class_spread": class_spread,
          "spread_ratio": spread / class_spread}
