"""Sample images that need no download and no ../shared.

Photographs shipped by installed dependencies (scikit-learn's `china.jpg` and
`flower.jpg`, matplotlib's `grace_hopper.jpg`), CIFAR-10 test images when the
dataset is at hand, and simple synthetic pictures the project makes itself.
"""

import os
from typing import Optional

import numpy as np

from cnnviz_jax import data


def bundled_photo_paths() -> dict[str, str]:
  """name -> path of photographs that installed packages ship."""
  import matplotlib.cbook
  import sklearn
  sk = os.path.join(os.path.dirname(sklearn.__file__), "datasets", "images")
  paths = {
      "china": os.path.join(sk, "china.jpg"),
      "flower": os.path.join(sk, "flower.jpg"),
      "grace_hopper": str(matplotlib.cbook.get_sample_data(
          "grace_hopper.jpg", asfileobj=False)),
  }
  return {k: v for k, v in paths.items() if os.path.exists(v)}


def bundled_photos(size: Optional[tuple[int, int]] = None,
                   max_side: Optional[int] = None) -> dict[str, np.ndarray]:
  """name -> float32 `[H, W, 3]` image in [0, 1]."""
  return {k: data.load_image(p, size=size, max_side=max_side)
          for k, p in bundled_photo_paths().items()}


def cifar_samples(path: str = data.DEFAULT_CIFAR, per_class: int = 2):
  """`(images float32 [10 * per_class, 32, 32, 3] in [0, 1], labels)` from
  the CIFAR-10 test split, or None when the dataset is absent."""
  if not os.path.exists(path):
    return None
  x, y = data.load_cifar10(path, "test", limit=per_class)
  return x.astype(np.float32) / 255.0, y


def synthetic_pattern(size: int = 64, seed: int = 0) -> np.ndarray:
  """A smooth colourful pattern, float32 `[size, size, 3]` in [0, 1]."""
  rng = np.random.RandomState(seed)
  yy, xx = np.mgrid[0:size, 0:size] / size
  chans = [0.5 + 0.5 * np.sin(2 * np.pi * (rng.rand() * 3 * xx + rng.rand() * 3 * yy)
                              + rng.rand() * 6) for _ in range(3)]
  return np.stack(chans, -1).astype(np.float32)
