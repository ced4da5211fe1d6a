"""Shared by the launcher configs (big_vision `configs/common.py` style)."""

from typing import Optional, Sequence

# Big enough to check the wiring end to end, small enough for a 2-core CPU.
SMOKE = "smoke"


def parse_arg(arg: Optional[str], name: str,
              accepted: Sequence[str] = (SMOKE,)) -> str:
  """The config argument after `:` in `--config=path.py:arg`.

  Args:
    arg: None or "" for the full-size default, else one of `accepted`.
    name: the config's name, for the error message.
    accepted: the values this config understands.

  Returns:
    `arg`, with None as "".

  Raises:
    ValueError: `arg` is not "" and not in `accepted`.
  """
  arg = arg or ""
  if arg and arg not in accepted:
    raise ValueError(f"unknown argument {arg!r} for config {name!r}; accepted: "
                     f"'' (the default) or {', '.join(map(repr, accepted))}.")
  return arg
