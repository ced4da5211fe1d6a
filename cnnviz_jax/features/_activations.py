"""Activations of one image (maps) and of a dataset (feature vectors)."""

import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from cnnviz_jax.features import _receptive, _stream

# XLA:CPU runs small batches faster (the activations stay in cache): cifar_vgg
# up to relu3_2 over 2,048 CIFAR images on 2 cores took 8.4 / 9.2 / 11.1 /
# 11.5 s at batch 16 / 32 / 64 / 256. On a GPU pass a larger batch_size.
DEFAULT_BATCH = 32


def to_float(x: jax.Array) -> jax.Array:
  """uint8 [0, 255] or float [0, 1] images -> float32 [0, 1] (inside jit)."""
  return x.astype(jnp.float32) / 255.0 if x.dtype == jnp.uint8 else x


@functools.partial(jax.jit, static_argnames=("layer",))
def forward(model, images: jax.Array, layer: str) -> jax.Array:
  """`layer`'s activation of a batch; stops after `layer`. Jitted once per
  model architecture, layer and batch shape (the model is a pytree)."""
  _, taps = model.apply(model.params, to_float(images), taps=(layer,),
                        logits=False)
  return taps[layer]


def _one_image(image) -> np.ndarray:
  image = np.asarray(image)
  if image.ndim == 3:
    image = image[None]
  if image.ndim != 4 or len(image) != 1:
    raise ValueError("image must be one float32 [H, W, 3] image in [0, 1] (or "
                     f"[1, H, W, 3]); got shape {image.shape}.")
  return _stream.check_images(image, "image")


def strongest_channels(maps, top: int) -> np.ndarray:
  """Indices of the `top` channels of `maps [C, h, w]` by mean activation,
  strongest first (ties: lower index first)."""
  maps = np.asarray(maps)
  if not 0 < top <= len(maps):
    raise ValueError(f"top must be in 1..{len(maps)} (the channels); got {top}.")
  return np.argsort(-maps.mean(axis=(1, 2)), kind="stable")[:top]


def activation_maps(model, image, layer: str, *,
                    top: Optional[int] = None) -> np.ndarray:
  """Every channel's activation map for one image (the Yosinski et al. 2015
  deep visualization toolbox view).

  Args:
    model: a `Model`.
    image: float32 `[H, W, 3]` (or `[1, H, W, 3]`) RGB in [0, 1].
    layer: a spatial layer (canonical or torchvision path).
    top: keep only the `top` channels by mean activation, strongest first
      (their indices: `strongest_channels(activation_maps(...), top)`).

  Returns:
    float32 `[C, h, w]` (`[top, h, w]`), the layer's raw activations.

  Raises:
    ValueError: a layer without spatial extent; a bad image; `top` out of
      1..C.
  """
  name = _receptive.check_spatial(model, layer, "activation_maps")
  acts = np.asarray(forward(model, jnp.asarray(_one_image(image)), name))[0]
  maps = np.moveaxis(acts, -1, 0)
  return maps if top is None else maps[strongest_channels(maps, top)]


def extract(model, images: _stream.Images, layer: str, *,
            batch_size: int = DEFAULT_BATCH) -> np.ndarray:
  """Feature vectors of a dataset at `layer`, streamed in jitted batches.

  Device memory holds one batch; batches are dispatched one ahead of the
  host copy so that the network and the copying overlap. Progress is logged.

  Args:
    model: a `Model`.
    images: float32 `[N, H, W, 3]` RGB in [0, 1] or uint8 `[N, H, W, 3]`, or
      an iterable of such batches (any sizes).
    layer: any layer (canonical or torchvision path).
    batch_size: images per network call (one compilation for all).

  Returns:
    float32 `[N, D]` on the host; spatial activations `[h, w, C]` are
    flattened in that (NHWC) order, `D = h * w * C`.
  """
  name = model.resolve(layer)
  total = _stream.dataset_size(images)
  progress = _stream.Progress(f"extract {name}", total)
  parts, out, count, pending = [], None, 0, None

  def drain(p):
    nonlocal out
    feats, start, valid = p
    feats = np.asarray(feats).reshape(len(feats), -1)[:valid]
    if total is not None:
      if out is None:
        out = np.empty((total, feats.shape[1]), np.float32)
      out[start:start + valid] = feats
    else:
      parts.append(feats)

  for b in _stream.batches(images, batch_size):
    feats = forward(model, jnp.asarray(b.images), name)  # async dispatch
    if pending is not None:
      drain(pending)
    pending = (feats, b.start, b.valid)
    count = b.start + b.valid
    progress.update(count)
  drain(pending)
  progress.done(count)
  return out if total is not None else np.concatenate(parts)
