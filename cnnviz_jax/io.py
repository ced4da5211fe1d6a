"""Files that are never half-written: atomic writes and JSON."""

import json
import os
import tempfile

# Prefix of the temporary files `atomic_write` renames into place; a process
# killed mid-write leaves one behind (`remove_stale_temps` cleans them).
TMP_PREFIX = ".tmp-"


def _fsync_path(path: str, flags: int = os.O_RDONLY) -> None:
  fd = os.open(path, flags)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def atomic_write(path: str, write_fn) -> None:
  """Calls `write_fn(tmp_path)`, then renames onto `path`: never half-written.

  The data is fsynced before the rename and the directory after it, so that a
  crash or power loss leaves either the old file or the new one, complete.
  """
  path = os.fspath(path)
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=TMP_PREFIX,
                             suffix=os.path.basename(path))
  os.close(fd)
  try:
    write_fn(tmp)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600 files
    _fsync_path(tmp)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  if hasattr(os, "O_DIRECTORY"):  # POSIX: make the rename itself durable
    _fsync_path(directory, os.O_RDONLY | os.O_DIRECTORY)


def write_bytes(path: str, blob: bytes) -> None:
  """Writes `blob` to `path`, atomically."""
  def write(tmp):
    with open(tmp, "wb") as f:
      f.write(blob)
  atomic_write(path, write)


def write_json(path: str, obj, indent: int = 1) -> None:
  """Writes `obj` as JSON to `path`, atomically."""
  def write(tmp):
    with open(tmp, "w") as f:
      json.dump(obj, f, indent=indent)
  atomic_write(path, write)


def remove_stale_temps(directory: str) -> list[str]:
  """Removes the temporary files that killed `atomic_write`s left in
  `directory` (call it only where no other process is writing).

  Returns:
    The removed paths.
  """
  removed = []
  for name in sorted(os.listdir(directory)):
    full = os.path.join(directory, name)
    if name.startswith(TMP_PREFIX) and os.path.isfile(full):
      os.remove(full)
      removed.append(full)
  return removed
