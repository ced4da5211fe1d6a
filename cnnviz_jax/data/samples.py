"""Sample images that need no download and no ../shared.

Photographs shipped by installed dependencies (scikit-learn's `china.jpg` and
`flower.jpg`, matplotlib's `grace_hopper.jpg`), CIFAR-10 test images (the full
dataset when at hand, else the sample bundled with this package), and simple
synthetic pictures the project makes itself. `load_images` (float images
for attribution and synthesis) and `load_dataset` (uint8 images with labels
for the feature tools) resolve a launcher's data option to one of these;
`example_image` and `photo` give the style tools their default pictures.
"""

import os
from typing import NamedTuple, Optional

import numpy as np
from PIL import Image

from cnnviz_jax.data import _cifar as data

# scikit-learn's sample images (public API: `load_sample_image`).
_SKLEARN_PHOTOS = ("china", "flower")


def bundled_photo_paths() -> dict[str, str]:
  """name -> path of photographs that installed packages ship (through their
  public APIs: `sklearn.datasets.load_sample_images().filenames`, matplotlib's
  `get_sample_data`)."""
  import matplotlib.cbook
  import sklearn.datasets
  paths = {os.path.splitext(os.path.basename(f))[0]: f
           for f in sklearn.datasets.load_sample_images().filenames}
  paths["grace_hopper"] = str(matplotlib.cbook.get_sample_data(
      "grace_hopper.jpg", asfileobj=False))
  return {k: v for k, v in paths.items() if os.path.exists(v)}


def bundled_photos(size: Optional[tuple[int, int]] = None,
                   max_side: Optional[int] = None) -> dict[str, np.ndarray]:
  """name -> float32 `[H, W, 3]` image in [0, 1], resized (bicubic) to `size`
  `(H, W)` or to a longer side of at most `max_side`."""
  import sklearn.datasets
  out = {name: data._fit(Image.fromarray(
      sklearn.datasets.load_sample_image(f"{name}.jpg")), size, max_side)
         for name in _SKLEARN_PHOTOS}
  for name, path in bundled_photo_paths().items():
    if name not in out:
      out[name] = data.load_image(path, size=size, max_side=max_side)
  return out


def cifar_samples(path: Optional[str] = None, per_class: int = 2):
  """`(images float32 [10 * per_class, 32, 32, 3] in [0, 1], labels int32)`
  from the CIFAR-10 test split, sorted by class.

  Args:
    path: a CIFAR-10 archive; None (or `data.DEFAULT_CIFAR`): the full
      archive when present, else the bundled sample (<= 100 per class).
    per_class: images per class.
  """
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
  """scikit-learn's `china.jpg` with its longer side at most `max_side`:
  float32 `[H, W, 3]` in [0, 1]."""
  import sklearn.datasets
  return data._fit(Image.fromarray(sklearn.datasets.load_sample_image(
      "china.jpg")), None, max_side)


def synthetic_scene(size: int = 32) -> np.ndarray:
  """A disk and a stripe on a colour gradient: an image with shape, edges
  and flat regions. float32 `[size, size, 3]` in [0, 1]."""
  yy, xx = np.mgrid[:size, :size] / size
  img = np.stack([xx, yy, 1 - xx], -1) * 0.6
  img[(yy - 0.5) ** 2 + (xx - 0.4) ** 2 < 0.06] = (0.9, 0.2, 0.1)
  img[:, int(size * 0.75):int(size * 0.85)] = (0.1, 0.8, 0.3)
  return img.astype(np.float32)


def first_test_image(path: Optional[str] = None,
                     size: Optional[int] = None) -> np.ndarray:
  """The first CIFAR-10 test image (an airplane) of `path` (None: the full
  archive when present, else the bundled sample).

  Args:
    path: a CIFAR-10 archive, or None.
    size: None keeps its 32x32 pixels; else the side it is resized to.

  Returns:
    float32 `[1, H, W, 3]` in [0, 1].
  """
  x = cifar_samples(path, per_class=1)[0][:1]
  if size is None or size == x.shape[1]:
    return x
  im = Image.fromarray(np.round(x[0] * 255).astype(np.uint8))
  return data._fit(im, (size, size), None)[None]


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
      interleaved), a folder of image files (by extension; subfolders and
      other files are skipped) or a comma-separated list of image files
      (resized to `size`), "synthetic" (`synthetic_images`), or None: the
      CIFAR-10 archive at `data.DEFAULT_CIFAR` when present, else the
      CIFAR-10 sample bundled with the package.
    size: `(H, W)` of synthetic and file images (the model's input size).
    n: number of images (at most), >= 1.
    seed: seed of synthetic images.

  Returns:
    `(images float32 [n, H, W, 3] in [0, 1], labels int32 [n] or None,
    source)`, where `source` is the resolved `spec`.
  """
  if not isinstance(n, (int, np.integer)) or n < 1:
    raise ValueError(f"n must be an integer >= 1; got {n!r}.")
  if spec is None:
    spec = data.resolve_cifar(None)
  if spec == "synthetic":
    return synthetic_images(n, size, seed), None, "synthetic"
  if os.path.isfile(spec) and spec.endswith((".tar", ".gz", ".zip")):
    x, y = data.load_cifar10(spec, "test", limit=-(-n // 10))
    # Round-robin over the class-sorted images so that n < 10 mixes classes.
    keep = np.arange(len(y)).reshape(-1, len(y) // 10).T.ravel()[:n]
    return x[keep].astype(np.float32) / 255, y[keep], spec
  files = data.image_files(spec) if os.path.isdir(spec) else spec.split(",")
  return np.stack([data.load_image(f, size=size) for f in files[:n]]), None, spec


class Dataset(NamedTuple):
  """Images for the feature tools, which stream uint8 (`load_dataset`)."""
  images: np.ndarray              # uint8 [N, H, W, 3]
  labels: Optional[np.ndarray]    # int32 [N], or None (folders)
  class_names: tuple              # names of the label values (() without)
  source: str                     # the resolved data option


def _interleave(x: np.ndarray, y: np.ndarray, n: int):
  """The first `n` images taking the classes in turn (class-sorted input),
  so that any prefix mixes the classes."""
  order = np.lexsort((np.arange(len(y)), y))
  rank = np.empty(len(y), int)
  for c in np.unique(y):
    idx = order[y[order] == c]
    rank[idx] = np.arange(len(idx))
  keep = np.lexsort((y, rank))[:n]
  return x[keep], y[keep]


def _to_uint8(x: np.ndarray) -> np.ndarray:
  return (np.asarray(x) * 255 + 0.5).astype(np.uint8)


def load_dataset(spec: Optional[str], split: str, n: int,
                 size: tuple[int, int], seed: int = 0) -> Dataset:
  """Images for the feature tools (filters, activations, max patches,
  neighbours, embeddings).

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
    ValueError: a missing path, a folder without images.
  """
  if spec is None or spec == data.DEFAULT_CIFAR:
    spec = data.resolve_cifar(spec)
  if spec == data.SAMPLE_CIFAR:
    x, y = data.load_cifar10(spec, "test")   # class-sorted, 100 per class
    keep = (np.arange(len(y)) % 100 >= 50) == (split == "train")
    x, y = _interleave(x[keep], y[keep], n)
    return Dataset(x, y, tuple(data.CIFAR10_CLASSES), f"{spec} ({split} half)")
  if spec == "synthetic":
    return Dataset(_to_uint8(synthetic_images(n, size, seed + (split == "train"))),
                   np.arange(n, dtype=np.int32) % 2, ("disc", "square"), spec)
  if not os.path.exists(spec):
    raise ValueError(f"data {spec!r} not found: pass a CIFAR-10 archive, an "
                     "image folder or 'synthetic'.")
  if os.path.isfile(spec) or os.path.isdir(os.path.join(spec, split)):
    x, y = data.load_cifar10(spec, split, limit=-(-n // 10))
    x, y = _interleave(x, y, n)
    return Dataset(x, y, tuple(data.CIFAR10_CLASSES), spec)
  files = data.image_files(spec)  # a CIFAR-10 folder is <split>/<class>/*.jpg
  return Dataset(np.stack([_to_uint8(data.load_image(f, size=size))
                           for f in files[:n]]), None, (), spec)


def example_image(path: Optional[str], max_side: int) -> np.ndarray:
  """A texture example: `path` bounded to `max_side`, or the central square
  of scikit-learn's flower.jpg (petals) at `max_side` x `max_side`.
  float32 `[h, w, 3]` in [0, 1]."""
  if path:
    return data.load_image(path, max_side=max_side)
  photos = bundled_photo_paths()
  if "flower" not in photos:
    return synthetic_pattern(max_side)
  with Image.open(photos["flower"]) as im:
    w, h = im.size
    side = min(h, w) // 2
    crop = im.crop(((w - side) // 2, (h - side) // 2,
                    (w + side) // 2, (h + side) // 2))
    return data._fit(crop, (max_side, max_side), None)


def photo(path: Optional[str], max_side: int, default: str) -> np.ndarray:
  """`path`, or the bundled photograph `default` (`bundled_photos`; a
  synthetic pattern where it is missing), bounded to `max_side`."""
  if path:
    return data.load_image(path, max_side=max_side)
  return bundled_photos(max_side=max_side).get(default,
                                               synthetic_pattern(max_side))
