"""Parameter files: safetensors with `/`-joined keys (never pickle).

Metadata (a str -> str map in the safetensors header) carries the
architecture, the source and the class names (JSON list).
"""

import json
import os
from typing import Mapping, Optional

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file
from safetensors import safe_open

from cnnviz_jax.io import atomic_write
from cnnviz_jax.models import core


def save(path: str, params, metadata: Optional[Mapping[str, str]] = None):
  """Writes a parameter pytree to `path` (safetensors, atomically)."""
  flat = {k: np.ascontiguousarray(np.asarray(v, np.float32))
          for k, v in core.flatten(params).items()}
  meta = {k: (v if isinstance(v, str) else json.dumps(v))
          for k, v in (metadata or {}).items()}
  atomic_write(path, lambda tmp: save_file(flat, tmp, metadata=meta))


def read_metadata(path: str) -> dict:
  """The str -> str metadata map of a safetensors file.

  Raises:
    FileNotFoundError: no such file.
    ValueError: the file is not readable as safetensors (naming it).
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"weights file not found: {path}")
  try:
    with safe_open(path, framework="numpy") as f:
      return dict(f.metadata() or {})
  except (SafetensorError, OSError) as e:
    raise _unreadable(path, e) from e


def _unreadable(path: str, e: Exception) -> ValueError:
  return ValueError(
      f"cannot read {path} as safetensors ({e}): the file is truncated, "
      "corrupt or not a weights file. Write it again (zoo weights: "
      "python -m weights_conversion.convert_torchvision; trained networks: their trainer).")


def check_keys(flat: Mapping, expected: Mapping[str, tuple], what: str) -> None:
  """Raises ValueError listing missing, unexpected and mis-shaped keys."""
  missing = sorted(set(expected) - set(flat))
  unexpected = sorted(set(flat) - set(expected))
  shapes = sorted(f"{k}: got {tuple(np.shape(flat[k]))}, expected {expected[k]}"
                  for k in set(flat) & set(expected)
                  if tuple(np.shape(flat[k])) != tuple(expected[k]))
  if missing or unexpected or shapes:
    raise ValueError(
        f"{what} does not match the architecture:\n"
        f"  missing keys ({len(missing)}): {missing}\n"
        f"  unexpected keys ({len(unexpected)}): {unexpected}\n"
        f"  mis-shaped keys ({len(shapes)}): {shapes}")


def load(path: str, expected: Mapping[str, tuple]):
  """Reads `path` and checks it against `expected` shapes.

  Returns:
    `(params pytree of float32 numpy arrays, metadata dict)`.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"weights file not found: {path}")
  try:
    flat = load_file(path)
  except (SafetensorError, OSError, ValueError) as e:
    raise _unreadable(path, e) from e
  meta = read_metadata(path)
  check_keys(flat, expected, f"weights file {path}")
  check_finite(flat, f"weights file {path}")
  return core.unflatten({k: v.astype(np.float32) for k, v in flat.items()}), meta


def check_finite(flat: Mapping, what: str) -> None:
  """Raises ValueError naming the first tensor (in key order) holding NaN or
  infinite values: such weights give NaN maps, or normal-looking ones under
  `jit` where image checks are skipped."""
  for k in sorted(flat):
    v = np.asarray(flat[k])
    if not np.all(np.isfinite(v)):
      raise ValueError(
          f"{what}: tensor {k!r} holds {int(np.isnan(v).sum())} NaN and "
          f"{int(np.isinf(v).sum())} infinite values (of {v.size}); the "
          "weights are corrupt (e.g. a diverged training run).")


def read_training_state(path: str, version, *, json_fields=(),
                        what: str = "training checkpoint") -> dict:
  """Reads a trainer's msgpack checkpoint (one file holding the state, the
  history and the config, written atomically by `io.atomic_write`).

  Args:
    path: the checkpoint file.
    version: the `"format"` entry this trainer writes.
    json_fields: entries stored as JSON strings, decoded here.
    what: how the file is called in the error message.

  Returns:
    the stored dict.

  Raises:
    ValueError: naming the file and what to do, when it is corrupt, truncated
      or of another format (msgpack raises several unrelated types).
  """
  import flax  # the trainers' serialization; loading weights needs no flax
  try:
    with open(path, "rb") as f:
      stored = flax.serialization.msgpack_restore(f.read())
    if stored.get("format") != version:
      raise ValueError(f"format {stored.get('format')!r}, expected {version}")
    for k in json_fields:
      stored[k] = json.loads(stored[k])
    return stored
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(
        f"{what} {path} is corrupt, truncated or from another version "
        f"({type(e).__name__}: {e}). It is written atomically, so a killed run "
        "does not cause this: move the file away to start over, or use "
        "another --workdir.") from e
