"""The `data` option of the feature launchers (filters, activations,
max_patches, neighbors, embedding): a CIFAR-10 archive or JPEG tar, an image
folder, or "synthetic", as uint8 arrays that `cnnviz_jax.features` streams.
"""

import os
from typing import NamedTuple, Optional

import numpy as np

from cnnviz_jax import data

_IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")


class Dataset(NamedTuple):
  images: np.ndarray              # uint8 [N, H, W, 3]
  labels: Optional[np.ndarray]    # int32 [N], or None (folders, synthetic)
  class_names: tuple              # names of the label values ( () without)
  source: str                     # the resolved `data` option


def _interleave(x, y, n):
  """The first `n` images taking the classes in turn (class-sorted input),
  so that any prefix mixes the classes."""
  order = np.lexsort((np.arange(len(y)), y))
  rank = np.empty(len(y), int)
  for c in np.unique(y):
    idx = order[y[order] == c]
    rank[idx] = np.arange(len(idx))
  keep = np.lexsort((y, rank))[:n]
  return x[keep], y[keep]


def _folder(path: str, size: tuple[int, int], n: int) -> np.ndarray:
  files = sorted(f for f in os.listdir(path) if f.lower().endswith(_IMAGE_EXTS))
  if not files:
    raise ValueError(f"image folder {path!r} holds no images (accepted: "
                     f"{', '.join(_IMAGE_EXTS)}; a CIFAR-10 folder is laid out "
                     "<split>/<class>/*.jpg).")
  return np.stack([(data.load_image(os.path.join(path, f), size=size) * 255
                    + 0.5).astype(np.uint8) for f in files[:n]])


def load(spec: Optional[str], split: str, n: int,
         size: tuple[int, int], seed: int = 0) -> Dataset:
  """Images for a launcher.

  Args:
    spec: a CIFAR-10 archive (python or JPEG tar/zip) or CIFAR-10 folder
      (`<split>/<class>/*.jpg`); a folder of image files (resized to `size`,
      no labels); "synthetic" (discs and squares, labelled 0 and 1); None
      or `data.DEFAULT_CIFAR`: the full archive when present, else the bundled
      1,000-image test sample, split in two disjoint halves (images 0-49 of
      each class serve as "test", 50-99 as "train") so that queries and
      database stay distinct.
    split: "train" or "test" (CIFAR-10 only).
    n: images wanted (at most), classes interleaved.
    size: `(H, W)` of folder and synthetic images.
    seed: of synthetic images.

  Raises:
    ValueError: a missing path, an empty folder.
  """
  if spec is None or spec == data.DEFAULT_CIFAR:
    spec = data.resolve_cifar(spec)
  if spec == data.SAMPLE_CIFAR:
    x, y = data.load_cifar10(spec, "test")   # class-sorted, 100 per class
    keep = (np.arange(len(y)) % 100 >= 50) == (split == "train")
    x, y = _interleave(x[keep], y[keep], n)
    return Dataset(x, y, tuple(data.CIFAR10_CLASSES), f"{spec} ({split} half)")
  if spec == "synthetic":
    from cnnviz_jax.data import samples
    x = samples.synthetic_images(n, size, seed + (split == "train"))
    return Dataset((x * 255 + 0.5).astype(np.uint8),
                   np.arange(n, dtype=np.int32) % 2, ("disc", "square"), spec)
  if not os.path.exists(spec):
    raise ValueError(f"data {spec!r} not found: pass a CIFAR-10 archive, an "
                     "image folder or 'synthetic'.")
  is_cifar_folder = os.path.isdir(os.path.join(spec, split))
  if os.path.isfile(spec) or is_cifar_folder:
    x, y = data.load_cifar10(spec, split, limit=-(-n // 10))
    x, y = _interleave(x, y, n)
    return Dataset(x, y, tuple(data.CIFAR10_CLASSES), spec)
  return Dataset(_folder(spec, size, n), None, (), spec)


def enlarge(image: np.ndarray, scale: int) -> np.ndarray:
  """Nearest-neighbour upscaling for display (`[H, W(, 3)]`, each pixel a
  `scale x scale` block), so small filters and CIFAR crops stay crisp."""
  return np.repeat(np.repeat(np.asarray(image), scale, 0), scale, 1)
