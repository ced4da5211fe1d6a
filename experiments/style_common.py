"""Inputs shared by the style launchers: example and content images from a
path or from the photographs installed packages ship (no download)."""

from typing import Optional

import numpy as np

from cnnviz_jax import data
from cnnviz_jax.data import samples


def example_image(path: Optional[str], max_side: int) -> np.ndarray:
  """`path` bounded to `max_side`, or the central square of scikit-learn's
  flower.jpg (petals: a texture) at `max_side`; float32 `[h, w, 3]`."""
  if path:
    return data.load_image(path, max_side=max_side)
  photos = samples.bundled_photo_paths()
  if "flower" not in photos:
    return samples.synthetic_pattern(max_side)
  full = data.load_image(photos["flower"])
  h, w = full.shape[:2]
  side = min(h, w) // 2
  crop = full[(h - side) // 2:(h + side) // 2, (w - side) // 2:(w + side) // 2]
  from cnnviz_jax import image
  import jax.numpy as jnp
  out = image.resize(jnp.asarray(crop)[None], (max_side, max_side), "linear")[0]
  return np.clip(np.asarray(out), 0.0, 1.0)


def photo(path: Optional[str], max_side: int, default: str) -> np.ndarray:
  """`path`, or the bundled photograph `default`, bounded to `max_side`."""
  if path:
    return data.load_image(path, max_side=max_side)
  photos = samples.bundled_photos(max_side=max_side)
  return photos.get(default, samples.synthetic_pattern(max_side))
