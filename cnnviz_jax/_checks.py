"""Input validation shared by every public function.

Checks run at the Python level on shapes and dtypes (static under `jit`). The
value-range check runs only on concrete arrays: inside a traced function the
values are unknown, and a data-dependent check there would need a host sync.
"""

from typing import Any

import jax
import numpy as np


def is_concrete(x: Any) -> bool:
  """True when `x` holds values (not a tracer under jit/vmap/grad)."""
  return not isinstance(x, jax.core.Tracer)


def check_images(images: Any, *, name: str = "images", min_size: int = 1) -> None:
  """Raises ValueError unless `images` is float32 `[N, H, W, 3]` RGB in [0, 1].

  Args:
    images: the array to check.
    name: how the argument is called in the error message.
    min_size: the smallest accepted height and width.
  """
  shape = getattr(images, "shape", None)
  dtype = getattr(images, "dtype", None)
  if shape is None or dtype is None:
    raise ValueError(
        f"{name} must be an array float32 [N, H, W, 3] in [0, 1]; got "
        f"{type(images).__name__}.")
  if len(shape) != 4:
    raise ValueError(
        f"{name} must have rank 4 [N, H, W, 3] (NHWC); got shape {tuple(shape)}"
        " (rank %d). Add a batch axis with images[None] for one image."
        % len(shape))
  if shape[-1] != 3:
    raise ValueError(
        f"{name} must have 3 RGB channels last (NHWC); got shape "
        f"{tuple(shape)}. Convert grayscale with np.repeat(x, 3, -1); "
        "transpose NCHW with x.transpose(0, 2, 3, 1).")
  if np.dtype(dtype) != np.float32:
    raise ValueError(
        f"{name} must be float32 with values in [0, 1]; got dtype {dtype}. "
        "Convert uint8 images with images.astype(np.float32) / 255.")
  if min(shape[1], shape[2]) < min_size:
    raise ValueError(
        f"{name} must be at least {min_size}x{min_size} pixels; got "
        f"{shape[1]}x{shape[2]}.")
  if is_concrete(images) and np.size(images):
    # On host values: a concrete array closed over by a jitted function
    # would otherwise be reduced by traced jax ops (no float() of those).
    values = np.asarray(images)
    lo, hi = float(values.min()), float(values.max())
    if not np.isfinite(lo) or not np.isfinite(hi):
      raise ValueError(f"{name} contains NaN or infinite values.")
    if lo < 0.0 or hi > 1.0:
      raise ValueError(
          f"{name} must have values in [0, 1]; got range [{lo:.4g}, {hi:.4g}]."
          " Images are not clipped silently: divide uint8 data by 255, or "
          "undo a normalization before calling.")


def check_classes(classes: Any, num_classes: int, *, name: str = "targets"):
  """Raises ValueError unless every entry is an int class index in range."""
  arr = np.asarray(classes) if is_concrete(classes) else None
  if arr is None:
    return
  if arr.dtype.kind not in "iu":
    raise ValueError(f"{name} must be integer class indices; got dtype {arr.dtype}.")
  if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
    bad = arr[(arr < 0) | (arr >= num_classes)]
    raise ValueError(
        f"{name} holds class indices out of range: {bad.tolist()[:10]}; valid "
        f"indices are 0..{num_classes - 1}.")


def check_positive(value: Any, name: str, *, allow_zero: bool = False) -> None:
  """Raises ValueError unless `value` (a Python number) is > 0 (or >= 0)."""
  if not is_concrete(value):
    return
  arr = np.asarray(value)
  ok = (arr >= 0) if allow_zero else (arr > 0)
  if not np.all(ok):
    rel = ">= 0" if allow_zero else "> 0"
    raise ValueError(f"{name} must be {rel}; got {value!r}.")


def check_key(key: Any, name: str = "key") -> None:
  """Raises ValueError unless `key` is a JAX PRNG key: a typed key
  (`jax.random.key(0)`) or a raw uint32 `[2]` key (`jax.random.PRNGKey(0)`)."""
  dtype = getattr(key, "dtype", None)
  shape = getattr(key, "shape", None)
  if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
    if shape == ():
      return
  elif dtype is not None and np.dtype(dtype) == np.uint32 and tuple(shape) == (2,):
    return
  got = (f"{type(key).__name__} {key!r}" if dtype is None
         else f"an array of dtype {dtype} and shape {tuple(shape)}")
  raise ValueError(
      f"{name} must be one JAX PRNG key, e.g. jax.random.PRNGKey(0) or "
      f"jax.random.key(0); got {got}.")


def is_int(value: Any) -> bool:
  """True for a Python or numpy integer that is not a bool."""
  return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
  """True for an integer (not a bool) or a float."""
  return is_int(value) or isinstance(value, (float, np.floating))


class ConfigProblems:
  """Collects every problem of a config, then raises them in one ValueError
  (training launchers validate their whole config before any work).

      problems = ConfigProblems(cfg, REQUIRED, "experiments/configs/x.py")
      problems.need(cfg.lr > 0, "lr", "a number > 0")
      problems.integers("epochs", "batch_size", minimum=1)
      problems.raise_if_any("training config")
  """

  def __init__(self, cfg, required, template: str):
    missing = [k for k in required if k not in cfg]
    if missing:
      raise ValueError(f"config lacks keys {missing}; start from {template}.")
    self.cfg = cfg
    self.problems = []

  def need(self, ok: bool, key: str, what: str) -> None:
    """Records that `key` must be `what` unless `ok`."""
    if not ok:
      self.problems.append(f"{key} must be {what}; got {self.cfg[key]!r}")

  def integers(self, *keys: str, minimum: int = 1, note: str = "") -> None:
    """Each of `keys` must be an integer >= `minimum`."""
    what = "an integer > 0" if minimum == 1 else f"an integer >= {minimum}"
    for k in keys:
      self.need(is_int(self.cfg[k]) and self.cfg[k] >= minimum, k, what + note)

  def raise_if_any(self, what: str) -> None:
    if self.problems:
      raise ValueError(f"invalid {what}:\n  " + "\n  ".join(self.problems))
