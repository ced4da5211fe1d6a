"""Multifaceted feature visualization (Nguyen et al. 2016)."""


import jax
import jax.numpy as jnp
import numpy as np

from cnnviz_jax import _checks as checks
from cnnviz_jax import objectives as O
from cnnviz_jax import objectives as R  # priors (l2, l1, tv) live in objectives

from cnnviz_jax.synthesis._recipes import DEFAULT_RECIPE
from cnnviz_jax.synthesis._visualize import visualize

Array = jax.Array


def kmeans(x: Array, k: int, *, key: Array, iters: int = 50):
  """Lloyd's k-means with k-means++ seeding. x: `[N, D]`.

  Returns `(centers [k, D], assignment int32 [N])`."""
  x = jnp.asarray(x, jnp.float32)
  n = x.shape[0]
  if not 1 <= k <= n:
    raise ValueError(f"k must be in [1, {n}] (number of points); got {k}.")
  keys = jax.random.split(key, k)
  idx = [int(jax.random.randint(keys[0], (), 0, n))]
  for i in range(1, k):
    d = jnp.min(jnp.sum(jnp.square(x[:, None] - x[jnp.asarray(idx)][None]), -1), 1)
    idx.append(int(jax.random.choice(keys[i], n, p=d / jnp.maximum(d.sum(), 1e-12))))
  centers = x[jnp.asarray(idx)]

  def step(c, _):
    d = jnp.sum(jnp.square(x[:, None] - c[None]), -1)
    a = jnp.argmin(d, axis=1)
    onehot = jax.nn.one_hot(a, k)
    counts = onehot.sum(0)
    new = (onehot.T @ x) / jnp.maximum(counts, 1)[:, None]
    return jnp.where(counts[:, None] > 0, new, c), None

  centers, _ = jax.lax.scan(step, centers, None, length=iters)
  assign = jnp.argmin(jnp.sum(jnp.square(x[:, None] - centers[None]), -1), 1)
  return centers, assign.astype(jnp.int32)


def multifaceted(model, images: Array, target: int, *, k: int, key: Array,
                 steps: int = 100, layer: str = "fc7",
                 recipe_name: str = DEFAULT_RECIPE, **overrides):
  """Multifaceted feature visualization (Nguyen et al. 2016): cluster a
  class's images in `layer` (fc7) space with k-means, start from each
  cluster's mean image and maximize the class; one facet per cluster.

  Args:
    images: float32 `[N, H, W, 3]` in [0, 1], images of class `target`.
    target: class index; k: number of facets (<= N).

  Returns:
    `(facets [k, H, W, 3], cluster means [k, H, W, 3], assignment [N])`.
  """
  checks.check_images(images, min_size=model.min_size)
  checks.check_classes(np.asarray([target]), model.num_classes, name="target")
  layer = model.resolve(layer)
  _, acts = model.apply(model.params, images, taps=(layer,), logits=False)
  feats = acts[layer].reshape(images.shape[0], -1)
  kkey, okey = jax.random.split(key)
  _, assign = kmeans(feats, k, key=kkey)
  onehot = jax.nn.one_hot(assign, k)
  means = jnp.einsum("nk,nhwc->khwc", onehot, images) / jnp.maximum(
      onehot.sum(0), 1)[:, None, None, None]
  res = visualize(model, O.class_logit(int(target)), k, key=okey, steps=steps,
                  size=images.shape[1:3], recipe_name=recipe_name, init=means,
                  **overrides)
  return res.images, means, assign
