"""Sample images that need no download and no ../shared.

Photographs shipped by installed dependencies (scikit-learn's `china.jpg` and
`flower.jpg`, matplotlib's `grace_hopper.jpg`), CIFAR-10 test images when the
dataset is at hand, and simple synthetic pictures the project makes itself;
`load_images` resolves a launcher's image option to one of these.
"""

import os
from typing import Optional

import numpy as np

from cnnviz_jax.data import _cifar as data


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


def default_photo(max_side: int = 128) -> np.ndarray:
  """scikit-learn's `china.jpg` with its longer side `max_side`, or
  `synthetic_pattern(max_side)` when it is absent: float32 `[H, W, 3]` in
  [0, 1]."""
  photos = bundled_photos(max_side=max_side)
  return photos["china"] if "china" in photos else synthetic_pattern(max_side)


def synthetic_scene(size: int = 32) -> np.ndarray:
  """A disk and a stripe on a colour gradient: an image with shape, edges
  and flat regions. float32 `[size, size, 3]` in [0, 1]."""
  yy, xx = np.mgrid[:size, :size] / size
  img = np.stack([xx, yy, 1 - xx], -1) * 0.6
  img[(yy - 0.5) ** 2 + (xx - 0.4) ** 2 < 0.06] = (0.9, 0.2, 0.1)
  img[:, int(size * 0.75):int(size * 0.85)] = (0.1, 0.8, 0.3)
  return img.astype(np.float32)


def first_test_image(path: str = data.DEFAULT_CIFAR, size: int = 32) -> np.ndarray:
  """The first CIFAR-10 test image (an airplane), or `synthetic_scene(size)`
  when the dataset is absent: float32 `[1, H, W, 3]` in [0, 1]."""
  cifar = cifar_samples(path, per_class=1)
  return cifar[0][:1] if cifar is not None else synthetic_scene(size)[None]


def synthetic_images(n: int, hw: tuple[int, int], seed: int = 0) -> np.ndarray:
  """Coloured discs (even indices) and squares (odd) on smooth backgrounds.

  Args:
    n: number of images.
    hw: `(H, W)`.
    seed: numpy seed of the colours, positions and sizes.

  Returns:
    float32 `[n, H, W, 3]` in [0, 1].
  """
  rng = np.random.RandomState(seed)
  h, w = hw
  yy, xx = np.mgrid[:h, :w] / np.array([h, w]).reshape(2, 1, 1)
  out = []
  for i in range(n):
    bg = rng.uniform(0.2, 0.8, 3) + 0.2 * (yy[..., None] - 0.5) * rng.uniform(-1, 1, 3)
    cy, cx, r = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.15, 0.3)
    inside = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r) if i % 2 == 0 else (
        (abs(yy - cy) < r) & (abs(xx - cx) < r))
    img = np.where(inside[..., None], rng.uniform(0, 1, 3), bg)
    out.append(np.clip(img, 0, 1))
  return np.asarray(out, np.float32).reshape(n, h, w, 3)


def load_images(spec: Optional[str], size: tuple[int, int], n: int,
                seed: int = 0) -> tuple[np.ndarray, Optional[np.ndarray], str]:
  """Images named by a launcher's `images` option.

  Args:
    spec: a CIFAR-10 archive (.tar/.gz/.zip; test images with the classes
      interleaved), a folder or comma-separated list of image files (resized
      to `size`), "synthetic" (`synthetic_images`), or None: the CIFAR-10
      archive at `data.DEFAULT_CIFAR` when present, else "synthetic".
    size: `(H, W)` of synthetic and file images (the model's input size).
    n: number of images (at most).
    seed: seed of synthetic images.

  Returns:
    `(images float32 [n, H, W, 3] in [0, 1], labels int32 [n] or None,
    source)`, where `source` is the resolved `spec`.
  """
  if spec is None:
    spec = data.DEFAULT_CIFAR if os.path.exists(data.DEFAULT_CIFAR) else "synthetic"
  if spec == "synthetic":
    return synthetic_images(n, size, seed), None, "synthetic"
  if os.path.isfile(spec) and spec.endswith((".tar", ".gz", ".zip")):
    x, y = data.load_cifar10(spec, "test", limit=-(-n // 10))
    # Round-robin over the class-sorted images so that n < 10 mixes classes.
    keep = np.arange(len(y)).reshape(-1, len(y) // 10).T.ravel()[:n]
    return x[keep].astype(np.float32) / 255, y[keep], spec
  files = ([os.path.join(spec, f) for f in sorted(os.listdir(spec))]
           if os.path.isdir(spec) else spec.split(","))
  return np.stack([data.load_image(f, size=size) for f in files[:n]]), None, spec
