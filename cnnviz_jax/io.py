"""Files that are never half-written: atomic writes and JSON."""

import json
import os
import tempfile


def atomic_write(path: str, write_fn) -> None:
  """Calls `write_fn(tmp_path)` then renames onto `path`: never half-written."""
  path = os.fspath(path)
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-",
                             suffix=os.path.basename(path))
  os.close(fd)
  try:
    write_fn(tmp)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600 files
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def write_json(path: str, obj, indent: int = 1) -> None:
  """Writes `obj` as JSON to `path`, atomically."""
  def write(tmp):
    with open(tmp, "w") as f:
      json.dump(obj, f, indent=indent)
  atomic_write(path, write)
