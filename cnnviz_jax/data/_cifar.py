"""Image data: CIFAR-10 readers and image file I/O.

CIFAR-10 comes as the standard python archive (`cifar-10-python.tar.gz`), or as
a tar, zip or folder of class-named JPEGs laid out `<root>/<split>/<class>/*.jpg`
(e.g. `../shared/data/cifar10-jpeg.tar`). Nothing is downloaded.
"""

import io
import os
import pickle  # only for the official CIFAR-10 python archive (data, not code)
import tarfile
import zipfile
from typing import Iterator, Optional

import numpy as np
from PIL import Image, UnidentifiedImageError


# The 10 CIFAR-10 classes in the official label order (Krizhevsky 2009).
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog",
                   "frog", "horse", "ship", "truck")

DEFAULT_CIFAR = os.path.join("..", "shared", "data", "cifar10-jpeg.tar")


def load_image(path: str, size: Optional[tuple[int, int]] = None,
               max_side: Optional[int] = None) -> np.ndarray:
  """Reads an image file as float32 `[H, W, 3]` RGB in [0, 1].

  Args:
    path: any format Pillow reads.
    size: optional `(H, W)` to resize to (bicubic).
    max_side: optional bound on the longer side (keeps the aspect ratio).
  """
  try:
    with Image.open(path) as im:
      im = im.convert("RGB")
      if size is not None:
        im = im.resize((size[1], size[0]), Image.BICUBIC)
      elif max_side is not None and max(im.size) > max_side:
        s = max_side / max(im.size)
        im = im.resize((max(1, round(im.size[0] * s)),
                        max(1, round(im.size[1] * s))), Image.BICUBIC)
      return np.asarray(im, np.float32) / 255.0
  except (FileNotFoundError, UnidentifiedImageError, OSError) as e:
    raise ValueError(f"cannot read image {path!r}: {e}") from e


def _decode(data: bytes) -> np.ndarray:
  with Image.open(io.BytesIO(data)) as im:
    return np.asarray(im.convert("RGB"), np.uint8)


def _class_of(path: str, split: str) -> Optional[int]:
  """Class index for `.../<split>/<class>/<file>.jpg`, else None."""
  parts = path.replace("\\", "/").split("/")
  if len(parts) < 3 or parts[-3] != split or not parts[-1].lower().endswith(
      (".jpg", ".jpeg", ".png")):
    return None
  return CIFAR10_CLASSES.index(parts[-2]) if parts[-2] in CIFAR10_CLASSES else None


def _iter_members(path: str) -> Iterator[tuple[str, callable]]:
  """(name, read()) for each file in a tar, zip or folder."""
  if os.path.isdir(path):
    for root, _, files in os.walk(path):
      for f in sorted(files):
        full = os.path.join(root, f)
        yield full, (lambda full=full: open(full, "rb").read())
  elif zipfile.is_zipfile(path):
    with zipfile.ZipFile(path) as z:
      for name in z.namelist():
        yield name, (lambda name=name: z.read(name))
  elif tarfile.is_tarfile(path):
    with tarfile.open(path) as t:
      for m in t:
        if m.isfile():
          yield m.name, (lambda m=m: t.extractfile(m).read())
  else:
    raise ValueError(f"{path}: not a folder, zip or tar archive of CIFAR-10 "
                     "(accepted: cifar-10-python.tar.gz, or a tar/zip/folder "
                     "laid out <split>/<class>/*.jpg).")


def _load_python_archive(path: str, split: str):
  names = ([f"data_batch_{i}" for i in range(1, 6)] if split == "train"
           else ["test_batch"])
  xs, ys = {}, {}
  with tarfile.open(path) as t:
    for m in t:
      base = os.path.basename(m.name)
      if base in names:
        d = pickle.load(t.extractfile(m), encoding="bytes")
        xs[base] = d[b"data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        ys[base] = np.asarray(d[b"labels"])
  if len(xs) != len(names):
    raise ValueError(f"{path}: missing CIFAR-10 batches "
                     f"{sorted(set(names) - set(xs))}")
  return (np.concatenate([xs[n] for n in names]),
          np.concatenate([ys[n] for n in names]).astype(np.int32))


def load_cifar10(path: str = DEFAULT_CIFAR, split: str = "train",
                 limit: Optional[int] = None):
  """Reads a CIFAR-10 split.

  Args:
    path: the python archive, or a tar/zip/folder of `<split>/<class>/*.jpg`.
    split: "train" or "test".
    limit: keep at most this many images per class (None: all), for tests.

  Returns:
    `(images uint8 [N, 32, 32, 3], labels int32 [N])`, ordered by file name
    within each class.
  """
  if split not in ("train", "test"):
    raise ValueError(f"split must be 'train' or 'test'; got {split!r}.")
  if not os.path.exists(path):
    raise FileNotFoundError(f"CIFAR-10 not found at {path}")
  if os.path.isfile(path) and tarfile.is_tarfile(path):
    with tarfile.open(path) as t:
      if any(os.path.basename(n) == "data_batch_1" for n in t.getnames()[:20]):
        x, y = _load_python_archive(path, split)
        if limit is not None:
          keep = np.concatenate([np.flatnonzero(y == c)[:limit] for c in range(10)])
          x, y = x[keep], y[keep]
        return x, y
  items, counts = [], np.zeros(10, int)
  for name, read in _iter_members(path):
    c = _class_of(name, split)
    if c is None or (limit is not None and counts[c] >= limit):
      continue
    counts[c] += 1
    items.append((c, name, _decode(read())))
  if not items:
    raise ValueError(f"{path}: no images found under {split}/<class>/")
  items.sort(key=lambda t: (t[0], t[1]))
  return (np.stack([t[2] for t in items]),
          np.asarray([t[0] for t in items], np.int32))
