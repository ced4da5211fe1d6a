"""Image data: CIFAR-10 readers and image file I/O. Nothing is downloaded and
nothing is unpickled.

CIFAR-10 comes as the official binary archive (`cifar-10-binary.tar.gz`), or
as a tar, zip or folder of class-named JPEGs laid out
`<root>/<split>/<class>/*.jpg` (e.g. `../shared/data/cifar10-jpeg.tar`). A
sample of the test split (100 images per class) ships with the package
(`SAMPLE_CIFAR`; provenance in `CIFAR10_SAMPLE.md` beside it).
"""

import io
import os
import tarfile
import zipfile
from typing import Iterator, Optional

from absl import logging
import numpy as np
from PIL import Image


# The 10 CIFAR-10 classes in the official label order (Krizhevsky 2009).
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog",
                   "frog", "horse", "ship", "truck")

DEFAULT_CIFAR = os.path.join("..", "shared", "data", "cifar10-jpeg.tar")
SAMPLE_CIFAR = os.path.join(os.path.dirname(__file__), "cifar10_sample.tar")
# Read as images in folders and in the JPEG layout; anything else is skipped.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff",
                    ".webp", ".ppm")
# The binary archive's record: 1 label byte, then 32x32 pixels per channel
# (R, then G, then B), row-major (https://www.cs.toronto.edu/~kriz/cifar.html).
_HW = 32
_RECORD = 1 + 3 * _HW * _HW
_BINARY_BATCHES = {"train": [f"data_batch_{i}.bin" for i in range(1, 6)],
                   "test": ["test_batch.bin"]}


def _fit(im: Image.Image, size: Optional[tuple[int, int]],
         max_side: Optional[int]) -> np.ndarray:
  """A PIL image as float32 `[H, W, 3]` in [0, 1], resized (bicubic) to
  `size` `(H, W)` or to a longer side of at most `max_side`."""
  im = im.convert("RGB")
  if size is not None:
    im = im.resize((size[1], size[0]), Image.BICUBIC)
  elif max_side is not None and max(im.size) > max_side:
    s = max_side / max(im.size)
    im = im.resize((max(1, round(im.size[0] * s)),
                    max(1, round(im.size[1] * s))), Image.BICUBIC)
  return np.asarray(im, np.float32) / 255.0


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
      return _fit(im, size, max_side)
  except (OSError, SyntaxError, ValueError) as e:  # what PIL raises on bad files
    raise ValueError(f"cannot read image {path!r}: {e}") from e


def image_files(folder: str) -> list[str]:
  """The image files (by extension, `IMAGE_EXTENSIONS`) directly in `folder`,
  sorted by name; subfolders and other files are skipped.

  Raises:
    ValueError: `folder` holds no image file.
  """
  files = [os.path.join(folder, f) for f in sorted(os.listdir(folder))
           if f.lower().endswith(IMAGE_EXTENSIONS)
           and os.path.isfile(os.path.join(folder, f))]
  if not files:
    raise ValueError(f"folder {folder} holds no image file (accepted "
                     f"extensions: {', '.join(IMAGE_EXTENSIONS)}).")
  return files


def _decode(data: bytes, name: str) -> np.ndarray:
  try:
    with Image.open(io.BytesIO(data)) as im:
      x = np.asarray(im.convert("RGB"), np.uint8)
  except (OSError, SyntaxError, ValueError) as e:
    raise ValueError(f"cannot read CIFAR-10 image {name}: {e}") from e
  if x.shape != (_HW, _HW, 3):
    raise ValueError(f"CIFAR-10 image {name} is {x.shape[1]}x{x.shape[0]}; "
                     f"CIFAR-10 images are {_HW}x{_HW}.")
  return x


def _class_of(path: str, split: str) -> Optional[int]:
  """Class index for `.../<split>/<class>/<file>.jpg`, else None."""
  parts = path.replace("\\", "/").split("/")
  if len(parts) < 3 or parts[-3] != split or not parts[-1].lower().endswith(
      IMAGE_EXTENSIONS):
    return None
  return CIFAR10_CLASSES.index(parts[-2]) if parts[-2] in CIFAR10_CLASSES else None


def _iter_members(path: str) -> Iterator[tuple[str, callable]]:
  """(name, read()) for each file in a tar, zip or folder."""
  if os.path.isdir(path):
    for root, dirs, files in os.walk(path):
      dirs.sort()
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
                     "(accepted: cifar-10-binary.tar.gz, or a tar/zip/folder "
                     "laid out <split>/<class>/*.jpg).")


def _archive_kind(path: str) -> str:
  """"binary", "python" (official archives, by their batch names) or
  "images" (anything else)."""
  if not (os.path.isfile(path) and tarfile.is_tarfile(path)):
    return "images"
  with tarfile.open(path) as t:
    for i, m in enumerate(t):
      base = os.path.basename(m.name)
      if base in ("data_batch_1.bin", "test_batch.bin"):
        return "binary"
      if base in ("data_batch_1", "test_batch"):
        return "python"
      if i >= 20:  # the official archives list their batches first
        return "images"
  return "images"


def _load_binary_archive(path: str, split: str):
  """Reads the official binary archive: fixed-size records of a label byte
  and 3,072 pixel bytes (CHW)."""
  names = _BINARY_BATCHES[split]
  found = {}
  with tarfile.open(path) as t:
    for m in t:
      base = os.path.basename(m.name)
      if base in names and m.isfile():
        blob = t.extractfile(m).read()
        if len(blob) % _RECORD:
          raise ValueError(f"{path}: {m.name} holds {len(blob)} bytes, not a "
                           f"whole number of {_RECORD}-byte records "
                           "(truncated?); download the archive again.")
        found[base] = np.frombuffer(blob, np.uint8).reshape(-1, _RECORD)
  missing = [n for n in names if n not in found]
  if missing:
    raise ValueError(f"{path}: missing CIFAR-10 batches {missing}.")
  rec = np.concatenate([found[n] for n in names])
  labels = rec[:, 0].astype(np.int32)
  if labels.max() >= len(CIFAR10_CLASSES):
    raise ValueError(f"{path}: labels up to {labels.max()}; CIFAR-10 labels "
                     f"are 0..{len(CIFAR10_CLASSES) - 1} (is it CIFAR-100?).")
  images = rec[:, 1:].reshape(-1, 3, _HW, _HW).transpose(0, 2, 3, 1)
  return images, labels


def _load_image_layout(path: str, split: str, limit: Optional[int]):
  items, counts = [], np.zeros(len(CIFAR10_CLASSES), int)
  for name, read in _iter_members(path):
    c = _class_of(name, split)
    if c is None or (limit is not None and counts[c] >= limit):
      continue
    counts[c] += 1
    items.append((c, name, _decode(read(), f"{name} in {path}")))
    if limit is not None and counts.min() >= limit:
      break  # every class is full: the rest of the archive is not read
  missing = [CIFAR10_CLASSES[c] for c in np.flatnonzero(counts == 0)]
  if missing:
    raise ValueError(
        f"{path}: no images for classes {missing} under {split}/<class>/ "
        f"(expected a folder per class: {', '.join(CIFAR10_CLASSES)}).")
  items.sort(key=lambda t: (t[0], t[1]))
  return (np.stack([t[2] for t in items]),
          np.asarray([t[0] for t in items], np.int32))


def resolve_cifar(path: Optional[str]) -> str:
  """The CIFAR-10 source `path` names: itself, or for None or the default
  location (`DEFAULT_CIFAR`), the full archive when present, else the bundled
  sample (`SAMPLE_CIFAR`, test split only)."""
  if path is None or os.path.normpath(path) == os.path.normpath(DEFAULT_CIFAR):
    if os.path.exists(DEFAULT_CIFAR):
      return DEFAULT_CIFAR
    logging.info("CIFAR-10 not found at %s: using the bundled sample %s",
                 DEFAULT_CIFAR, SAMPLE_CIFAR)
    return SAMPLE_CIFAR
  return path


def load_cifar10(path: Optional[str] = None, split: str = "train",
                 limit: Optional[int] = None):
  """Reads a CIFAR-10 split.

  Args:
    path: the binary archive (`cifar-10-binary.tar.gz`), or a tar/zip/folder
      of `<split>/<class>/*.jpg`. None (or `DEFAULT_CIFAR`): the full archive
      at `DEFAULT_CIFAR` when present, else the bundled sample (test split,
      100 images per class).
    split: "train" or "test".
    limit: keep at most this many images per class (None: all): the first
      ones in archive order.

  Returns:
    `(images uint8 [N, 32, 32, 3], labels int32 [N])`, sorted by class
    (stably: by file name within a class in the JPEG layouts).

  Raises:
    FileNotFoundError: `path` does not exist.
    ValueError: the split, the limit or the data are invalid; the message
      names the file.
  """
  if split not in ("train", "test"):
    raise ValueError(f"split must be 'train' or 'test'; got {split!r}.")
  if limit is not None and (not isinstance(limit, (int, np.integer))
                            or limit < 1):
    raise ValueError(f"limit must be an integer >= 1 or None; got {limit!r}.")
  path = resolve_cifar(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f"CIFAR-10 not found at {path}")
  if path == SAMPLE_CIFAR and split != "test":
    raise FileNotFoundError(
        f"CIFAR-10 not found at {DEFAULT_CIFAR}, and the bundled sample holds "
        f"only test images: pass the path of the full archive for {split!r}.")
  kind = _archive_kind(path)
  if kind == "python":
    raise ValueError(
        f"{path} is the CIFAR-10 python archive, which is read by unpickling "
        "(that can run code from the file): use the binary archive "
        "(cifar-10-binary.tar.gz) or a JPEG layout instead.")
  if kind == "images":
    return _load_image_layout(path, split, limit)
  x, y = _load_binary_archive(path, split)
  keep = np.concatenate([np.flatnonzero(y == c)[:limit]
                         for c in range(len(CIFAR10_CLASSES))])
  return x[keep], y[keep]


def load_sample():
  """The CIFAR-10 sample bundled with the package: the first 100 test images
  of each class (see `CIFAR10_SAMPLE.md`).

  Returns:
    `(images uint8 [1000, 32, 32, 3], labels int32 [1000])`, sorted by class.
  """
  return load_cifar10(SAMPLE_CIFAR, "test")
