"""Multifaceted feature visualization (Nguyen et al. 2016)."""

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


def multifaceted(model, images: Array, target: int, *, k: int, key: Array,
                 steps: int = 100, layer: str = "fc7",
                 recipe_name: str = DEFAULT_RECIPE, **overrides):
  """Multifaceted feature visualization (Nguyen et al. 2016): cluster a
  class's images in `layer` (fc7) space with k-means, start from each
  cluster's mean image and maximize the class; one facet per cluster.

  Args:
    images: float32 `[N, H, W, 3]` in [0, 1], images of class `target`.
    target: class index; k: number of facets (<= N).
    key: PRNG key (split between the clustering and the synthesis).
    steps, recipe_name, **overrides: as in `visualize`.

  Returns:
    `(facets [k, H, W, 3], cluster means [k, H, W, 3], assignment int32 [N])`.
  """
  checks.check_images(images, min_size=model.min_size)
  checks.check_classes(np.asarray([target]), model.num_classes, name="target")
  layer = model.resolve(layer)
  _, acts = model.apply(model.params, images, taps=(layer,), logits=False)
  kkey, okey = jax.random.split(key)
  assign = cluster_images(acts[layer], k, key=kkey)
  onehot = jax.nn.one_hot(assign, k)
  means = jnp.einsum("nk,nhwc->khwc", onehot, images) / jnp.maximum(
      onehot.sum(0), 1)[:, None, None, None]
  res = visualize(model, O.class_logit(int(target)), k, key=okey, steps=steps,
                  size=images.shape[1:3], recipe_name=recipe_name, init=means,
                  **overrides)
  return res.images, means, jnp.asarray(assign)
