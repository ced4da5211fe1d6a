"""Maximally activating units over a dataset, and their image patches
(Girshick et al. 2014, fig. 4; Zeiler and Fergus 2014, fig. 2).

The running top-k per channel lives on the device, `[C, k]` values with their
image index and position, and is merged with each batch's candidates by
`lax.top_k` inside one jitted step, so a pass over any number of images holds
one batch of activations at a time.
"""

import functools
from typing import NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from cnnviz_jax.features import _activations, _receptive, _stream


class TopActivations(NamedTuple):
  """The `k` strongest units per channel, strongest first.

  Attributes:
    values: float32 `[C, k]` activations.
    image_index: int32 `[C, k]` dataset index of the image.
    y, x: int32 `[C, k]` the unit's position in the layer's map.
    channels: int32 `[C]` the channels, in the order asked for.
    layer: the canonical layer name.
    image_hw: `(H, W)` of the images.
  """
  values: np.ndarray
  image_index: np.ndarray
  y: np.ndarray
  x: np.ndarray
  channels: np.ndarray
  layer: str
  image_hw: tuple


@functools.partial(jax.jit, static_argnames=("layer", "k", "distinct"))
def _step(model, state, images, start, valid, channels, *, layer, k, distinct):
  """Merges one batch's strongest units into `state = (values, image, pos)`."""
  acts = _activations.forward(model, images, layer)
  b, h, w, _ = acts.shape
  a = jnp.take(acts, channels, axis=-1).reshape(b, h * w, -1)   # [B, hw, C]
  a = jnp.where((jnp.arange(b) < valid)[:, None, None], a, -jnp.inf)
  if distinct:  # one unit per image: its strongest position
    pos = jnp.argmax(a, axis=1).T                                # [C, B]
    vals = jnp.max(a, axis=1).T
    img = jnp.broadcast_to(start + jnp.arange(b), vals.shape)
  else:
    vals, flat = jax.lax.top_k(a.reshape(b * h * w, -1).T, min(k, b * h * w))
    img, pos = start + flat // (h * w), flat % (h * w)
  # State first: for equal values lax.top_k keeps the lower index, i.e. the
  # earlier image, so the result equals a stable full sort for any batch size.
  all_vals = jnp.concatenate([state[0], vals], 1)
  best_vals, sel = jax.lax.top_k(all_vals, k)
  take = lambda s, c: jnp.take_along_axis(jnp.concatenate([s, c], 1), sel, 1)
  return (best_vals, take(state[1], img.astype(jnp.int32)),
          take(state[2], pos.astype(jnp.int32)))


def _check_channels(channels, num: int, layer: str) -> np.ndarray:
  ch = np.arange(num) if channels is None else np.atleast_1d(np.asarray(channels))
  if ch.dtype.kind not in "iu" or ch.ndim != 1 or len(ch) == 0:
    raise ValueError(f"channels must be a non-empty sequence of ints; got {channels!r}.")
  bad = ch[(ch < 0) | (ch >= num)]
  if len(bad):
    raise ValueError(f"channels {bad.tolist()} out of range: layer {layer} has "
                     f"{num} channels (valid 0..{num - 1}).")
  return ch.astype(np.int32)


def top_activations(model, images: _stream.Images, layer: str,
                    channels: Optional[Sequence[int]] = None, *, k: int = 9,
                    batch_size: int = _activations.DEFAULT_BATCH,
                    distinct_images: bool = True) -> TopActivations:
  """The `k` units with the largest activation per channel over a dataset.

  Args:
    model: a `Model`.
    images: float32 `[N, H, W, 3]` RGB in [0, 1] or uint8, or an iterable of
      such batches (streamed; nothing but the running top-k is kept).
    layer: a spatial layer (canonical or torchvision path).
    channels: channel indices; None: all.
    k: units kept per channel.
    batch_size: images per jitted step.
    distinct_images: True: at most one unit per image (its strongest
      position), as the lecture's patch grids show; False: any units, so
      neighbouring positions of one image may repeat.

  Returns:
    `TopActivations`, strongest first; ties keep the earlier image (and
    position), as a stable sort does.

  Raises:
    ValueError: a layer without spatial extent, a channel out of range, `k`
      < 1 or larger than the number of candidates (images, or units).
  """
  name = _receptive.check_spatial(model, layer, "top_activations")
  if not isinstance(k, (int, np.integer)) or k < 1:
    raise ValueError(f"k must be a positive int; got {k!r}.")
  total = _stream.dataset_size(images)
  progress = _stream.Progress(f"top_activations {name}", total)
  state, ch, hw, count = None, None, None, 0
  for b in _stream.batches(images, batch_size):
    if state is None:
      hw = b.images.shape[1:3]
      h, w, c = model.layer_shape(name, hw)
      ch = _check_channels(channels, c, name)
      per_image = 1 if distinct_images else h * w
      if total is not None and k > total * per_image:
        raise ValueError(
            f"k={k} is larger than the dataset: {total} images give "
            f"{total * per_image} candidate units per channel.")
      state = (jnp.full((len(ch), k), -jnp.inf, jnp.float32),
               jnp.full((len(ch), k), -1, jnp.int32),
               jnp.full((len(ch), k), -1, jnp.int32))
    state = _step(model, state, jnp.asarray(b.images), b.start, b.valid,
                  jnp.asarray(ch), layer=name, k=k, distinct=distinct_images)
    count = b.start + b.valid
    progress.update(count)
  progress.done(count)
  values, image, pos = (np.asarray(s) for s in state)
  if (image < 0).any():
    raise ValueError(f"k={k} is larger than the dataset: {count} images give "
                     f"fewer than {k} candidate units per channel.")
  _, w, _ = model.layer_shape(name, hw)
  return TopActivations(values, image, (pos // w).astype(np.int32),
                        (pos % w).astype(np.int32), ch, name, tuple(hw))


def patches(model, images, top: TopActivations, *,
            fill: float = 0.5) -> np.ndarray:
  """The receptive-field crops of `top`'s units.

  Args:
    model: the `Model` that `top` came from.
    images: the dataset `top` was computed on, as an indexable array float32
      `[N, H, W, 3]` in [0, 1] or uint8.
    top: a `TopActivations`.
    fill: value of the parts of a field outside the image (padding).

  Returns:
    float32 `[C, k, S, S, 3]`, `S` the receptive field size: each crop is the
    unit's full field, `receptive_box`'s clipped crop of the image at its
    place and `fill` where the field hangs over the border.

  Raises:
    ValueError: a layer without spatial extent; images not matching `top`.
  """
  field = _receptive.receptive_field(model, top.layer, top.image_hw)
  n = len(images)
  if tuple(images.shape[1:3]) != tuple(top.image_hw) or top.image_index.max() >= n:
    raise ValueError(f"images {tuple(images.shape)} are not the dataset of these "
                     f"top activations (images {top.image_hw}, largest index "
                     f"{top.image_index.max()}).")
  boxes = _receptive.receptive_boxes(model, top.layer, top.y, top.x, top.image_hw)
  s = field.size
  out = np.full((*top.values.shape, s, s, 3), fill, np.float32)
  for c, j in np.ndindex(*top.values.shape):
    y0, x0, y1, x1 = boxes[c, j]
    crop = np.asarray(images[top.image_index[c, j], y0:y1, x0:x1])
    if crop.dtype == np.uint8:
      crop = crop.astype(np.float32) / 255.0
    oy = y0 - (field.offset + top.y[c, j] * field.stride)
    ox = x0 - (field.offset + top.x[c, j] * field.stride)
    out[c, j, oy:oy + y1 - y0, ox:ox + x1 - x0] = crop
  return out
