"""Streaming over datasets: fixed-size batches (one compilation), progress.

A dataset is an array `[N, H, W, 3]` (float32 in [0, 1], or uint8 in
[0, 255], converted batch by batch so that 50,000 CIFAR images stay 150 MB of
uint8 on the host), or an iterable of such arrays of any sizes (re-chunked).
Every batch is padded to `batch_size` so that a pass compiles once.
"""

import time
from typing import Iterable, Iterator, NamedTuple, Optional, Union

from absl import logging
import numpy as np

Images = Union[np.ndarray, Iterable[np.ndarray]]


class Batch(NamedTuple):
  images: np.ndarray  # [batch_size, H, W, 3], uint8 or float32; padded
  start: int          # dataset index of images[0]
  valid: int          # images[:valid] are real, the rest padding


def dataset_size(data: Images) -> Optional[int]:
  """Number of images of an array dataset, None for an iterator."""
  return int(data.shape[0]) if hasattr(data, "shape") else None


def check_images(x, name: str = "images") -> np.ndarray:
  """`x` as a host array; ValueError unless it is float32 `[N, H, W, 3]` in
  [0, 1] or uint8 `[N, H, W, 3]`."""
  x = np.asarray(x)
  if x.ndim != 4 or x.shape[-1] != 3:
    raise ValueError(f"{name} must be [N, H, W, 3] RGB (NHWC); got shape "
                     f"{x.shape}. Add a batch axis with x[None] for one image.")
  if x.dtype == np.uint8:
    return x
  if x.dtype != np.float32:
    raise ValueError(f"{name} must be float32 in [0, 1] or uint8; got dtype "
                     f"{x.dtype}.")
  if x.size:
    lo, hi = float(x.min()), float(x.max())
    if not (0.0 <= lo and hi <= 1.0):  # also False for NaN
      raise ValueError(f"{name} must have values in [0, 1]; got range "
                       f"[{lo:.4g}, {hi:.4g}] (divide uint8 data by 255).")
  return x


def batches(data: Images, batch_size: int, *,
            name: str = "images") -> Iterator[Batch]:
  """Yields `Batch`es of exactly `batch_size` images (the last one padded).

  Args:
    data: float32 `[N, H, W, 3]` RGB in [0, 1] or uint8 `[N, H, W, 3]`, or an
      iterable of such arrays (any sizes; all the same image size).
    batch_size: images per batch (> 0).
    name: how the data is called in error messages.

  Raises:
    ValueError: bad dtype, shape or range; no images at all.
  """
  if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
    raise ValueError(f"batch_size must be a positive int; got {batch_size!r}.")
  chunks = [data] if hasattr(data, "shape") else data
  pending, count, start = [], 0, 0
  for chunk in chunks:
    chunk = check_images(chunk, name)
    if pending and chunk.shape[1:] != pending[0].shape[1:]:
      raise ValueError(f"{name}: all images must have one size and dtype; got "
                       f"{pending[0].shape[1:]} then {chunk.shape[1:]}.")
    pending.append(chunk)
    count += len(chunk)
    while count >= batch_size:
      joined = np.concatenate(pending) if len(pending) > 1 else pending[0]
      yield Batch(joined[:batch_size], start, batch_size)
      start += batch_size
      pending, count = [joined[batch_size:]], count - batch_size
  if count:
    joined = np.concatenate(pending) if len(pending) > 1 else pending[0]
    pad = np.zeros((batch_size - count, *joined.shape[1:]), joined.dtype)
    yield Batch(np.concatenate([joined, pad]), start, count)
    start += count
  if start == 0:
    raise ValueError(f"{name} holds no images.")


class Progress:
  """Logs `what: done/total images (rate)` at most every `every_s` seconds."""

  def __init__(self, what: str, total: Optional[int], every_s: float = 10.0):
    self.what, self.total, self.every_s = what, total, every_s
    self.t0 = self.last = time.perf_counter()

  def update(self, done: int) -> None:
    now = time.perf_counter()
    if now - self.last < self.every_s:
      return
    self.last = now
    of = f"/{self.total}" if self.total else ""
    logging.info("%s: %d%s images (%.0f images/s)", self.what, done, of,
                 done / max(now - self.t0, 1e-9))

  def done(self, count: int) -> None:
    dt = time.perf_counter() - self.t0
    logging.info("%s: %d images in %.1f s (%.0f images/s)", self.what, count,
                 dt, count / max(dt, 1e-9))
