"""Predictions and scores of a model on a batch: the one predict helper.

Class probabilities, top-k classes, runner-up classes, channel means and
activation norms: the numbers launchers, attacks and tests report.
"""


import functools

import jax
import jax.numpy as jnp
import numpy as np

from cnnviz_jax import _checks as checks
from cnnviz_jax._chunks import equal_chunks

Array = jax.Array

def logits(model, images: Array, batch_size: int = 250) -> Array:
  """Logits float32 `[N, classes]` of float32 `[N, H, W, 3]` images in [0, 1],
  computed `batch_size` images per jitted call (bounded memory)."""
  if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
    raise ValueError(f"batch_size must be an integer >= 1; got {batch_size!r}.")
  images = jnp.asarray(images)
  if images.shape[0] == 0:
    return jnp.zeros((0, model.num_classes), jnp.float32)
  parts = [_logits(model, images[ids])  # equal chunks: one compilation
           for ids, _ in equal_chunks(images.shape[0], batch_size)]
  return jnp.concatenate(parts)[:images.shape[0]]


@jax.jit
def _logits(model, images):
  return model.apply(model.params, images)[0]


def activations(model, images: Array, layers) -> dict[str, Array]:
  """`{layer: float32 [N, h, w, C] or [N, C]}` at the taps `layers` (names or
  aliases) of float32 `[N, H, W, 3]` images in [0, 1], in one jitted call
  (compiled once per model, image shape and layers; eager, the network ran
  op by op, 30 ms a call for the CIFAR VGG at 64x64)."""
  layers = tuple(model.resolve(l) for l in layers)
  return _activations(model, jnp.asarray(images), layers)


@functools.partial(jax.jit, static_argnums=2)
def _activations(model, images, layers):
  return model.apply(model.params, images, taps=layers, logits=False)[1]


def predict(model, images: Array, batch_size: int = 250):
  """`(top-1 class int [N], softmax float32 [N, classes])`, in batches.

  images: float32 `[N, H, W, 3]` RGB in [0, 1]."""
  p = jax.nn.softmax(logits(model, images, batch_size), axis=-1)
  return jnp.argmax(p, axis=1), p


def correctly_classified(model, images: np.ndarray, labels: np.ndarray,
                         n: int) -> tuple[np.ndarray, np.ndarray]:
  """The first `n` images the model classifies correctly (attacks start from
  those, so that success measures the attack, not the model's errors).

  Args:
    model: a `Model`.
    images: float32 `[M, H, W, 3]` RGB in [0, 1].
    labels: int `[M]` true classes.
    n: images kept (at most).

  Returns:
    `(images [<= n, H, W, 3], labels [<= n])`.
  """
  pred, _ = predict(model, images)
  ok = np.flatnonzero(np.asarray(pred) == np.asarray(labels))[:n]
  return images[ok], np.asarray(labels)[ok]


def class_probabilities(model, images: Array, classes) -> Array:
  """Softmax probability of `classes[i]` for image `i`.

  Args:
    model: a `Model`.
    images: float32 `[N, H, W, 3]` RGB in [0, 1].
    classes: int `[N]` class indices.

  Returns:
    float32 `[N]` in [0, 1].
  """
  classes = np.asarray(classes)
  checks.check_classes(classes, model.num_classes, name="classes")
  if classes.shape != (images.shape[0],):
    raise ValueError(f"classes must be [N] with N = {images.shape[0]}; "
                     f"got shape {classes.shape}.")
  probs = jax.nn.softmax(logits(model, images), axis=-1)
  return probs[jnp.arange(images.shape[0]), jnp.asarray(classes)]


def top_k(model, images: Array, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
  """The `k` most probable classes of each image.

  Args:
    model: a `Model`.
    images: float32 `[N, H, W, 3]` RGB in [0, 1].
    k: classes kept, in [1, num_classes].

  Returns:
    `(classes int [N, k], probabilities float32 [N, k] in [0, 1])`, most
    probable first.
  """
  if not 1 <= k <= model.num_classes:
    raise ValueError(f"k must be in [1, {model.num_classes}]; got {k}.")
  probs = np.asarray(jax.nn.softmax(logits(model, images), axis=-1))
  idx = np.argsort(-probs, axis=-1, kind="stable")[:, :k]
  return idx, np.take_along_axis(probs, idx, -1)


def runner_up(model, images: Array) -> Array:
  """The second most probable class of each image, int32 `[N]` (the nearest
  wrong class: the natural target of a fooling image)."""
  return jnp.argsort(logits(model, images), axis=1)[:, -2].astype(jnp.int32)


def random_other_classes(key: Array, labels, num_classes: int) -> Array:
  """A class drawn uniformly from the `num_classes - 1` classes other than
  `labels[i]`, int32 `[N]` (targets of a targeted attack)."""
  labels = jnp.asarray(labels, jnp.int32)
  shift = jax.random.randint(key, labels.shape, 1, num_classes)
  return (labels + shift) % num_classes


def channel_means(model, images: Array, layer: str, channels) -> Array:
  """Spatial mean activation of channel `channels[i]` of `layer` on image `i`.

  Args:
    model: a `Model`.
    images: float32 `[N, H, W, 3]` RGB in [0, 1].
    layer: tap name, e.g. "relu3_2".
    channels: int `[N]` channel indices.

  Returns:
    float32 `[N]`.
  """
  layer = model.resolve(layer)
  acts = activations(model, images, (layer,))[layer]
  # A float channel would be truncated silently by the int cast.
  checks.check_classes(channels, acts.shape[-1], name="channels")
  channels = jnp.asarray(channels, jnp.int32)
  acts = acts.reshape(acts.shape[0], -1, acts.shape[-1]).mean(axis=1)
  return acts[jnp.arange(acts.shape[0]), channels]


def activation_norm(model, images: Array, layer: str) -> Array:
  """L2 norm of each image's `layer` activation, float32 `[N]` (what DeepDream
  raises). images: float32 `[N, H, W, 3]` RGB in [0, 1], any size."""
  layer = model.resolve(layer)
  acts = activations(model, images, (layer,))[layer]
  return jnp.linalg.norm(acts.reshape(acts.shape[0], -1), axis=1)
