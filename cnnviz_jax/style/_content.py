"""Content and style crops for the feed-forward trainers (`_fast_train`,
`_adain`): a pool of photographs at several scales plus CIFAR-10 images,
random crops drawn on the host, and the batches of consecutive steps stacked
for one jitted chunk."""

import dataclasses
from typing import Callable, Optional, Sequence

import jax.numpy as jnp
import numpy as np

from cnnviz_jax import image as image_lib


@dataclasses.dataclass
class ContentPool:
  """Photographs at several scales (`photos`, float32 `[h, w, 3]` each, both
  sides >= the crop) and CIFAR-10 images (`cifar`, uint8 `[M, 32, 32, 3]`,
  possibly empty)."""
  photos: list
  cifar: np.ndarray


def content_pool(photos: Sequence[np.ndarray], cifar: Optional[np.ndarray],
                 crop: int, scales: Sequence[int]) -> ContentPool:
  """Each photo (float `[H, W, 3]` in [0, 1]) resized so its longer side is
  each of `scales` (kept where both sides reach `crop`)."""
  out = []
  for p in photos:
    p = np.asarray(p, np.float32)
    for side in scales:
      s = side / max(p.shape[:2])
      hw = (max(1, round(p.shape[0] * s)), max(1, round(p.shape[1] * s)))
      if min(hw) >= crop:
        out.append(np.asarray(jnp.clip(image_lib.resize(
            jnp.asarray(p)[None], hw, "linear"), 0.0, 1.0)[0]))
  cifar = np.zeros((0, 32, 32, 3), np.uint8) if cifar is None else np.asarray(cifar)
  if not out and not len(cifar):
    raise ValueError(f"no content images: no photograph reaches the {crop}px "
                     "crop at the given scales and no CIFAR-10 images.")
  return ContentPool(out, cifar)


def sample_batch(pool: ContentPool, rng: np.random.Generator, batch: int,
                 crop: int, cifar_fraction: float) -> np.ndarray:
  """float32 `[batch, crop, crop, 3]` in [0, 1]: random photo crops (random
  scale, position, horizontal flip) and upsampled CIFAR-10 images."""
  n_cifar = int(round(batch * cifar_fraction)) if len(pool.cifar) else 0
  n_cifar = batch if not pool.photos else n_cifar
  out = []
  for _ in range(batch - n_cifar):
    p = pool.photos[rng.integers(len(pool.photos))]
    y = rng.integers(p.shape[0] - crop + 1)
    x = rng.integers(p.shape[1] - crop + 1)
    im = p[y:y + crop, x:x + crop]
    out.append(im[:, ::-1] if rng.random() < 0.5 else im)
  if n_cifar:
    idx = rng.integers(len(pool.cifar), size=n_cifar)
    small = jnp.asarray(pool.cifar[idx], jnp.float32) / 255.0
    up = jnp.clip(image_lib.resize(small, (crop, crop), "linear"), 0.0, 1.0)
    flips = rng.random(n_cifar) < 0.5
    out += [im[:, ::-1] if f else im for im, f in zip(np.asarray(up), flips)]
  return np.stack(out).astype(np.float32)


def batch_styles(rng: np.random.Generator, batch: int, num_styles: int) -> np.ndarray:
  """int32 `[batch]` style indices: shuffled cycles over the styles, so a
  batch of `num_styles` images holds each style once."""
  reps = -(-batch // num_styles)
  return np.concatenate([rng.permutation(num_styles) for _ in range(reps)])[
      :batch].astype(np.int32)


def stacked_batches(batch_fn: Callable[[int], tuple], first: int, n: int):
  """The batches of steps `first .. first + n - 1` (`batch_fn(step)`, a tuple
  of arrays each), stacked per position: a tuple of `[n, ...]` arrays."""
  batches = [batch_fn(step) for step in range(first, first + n)]
  return tuple(jnp.asarray(np.stack(parts)) for parts in zip(*batches))
