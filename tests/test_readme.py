"""The README's "Use it in your own code" snippets run as written.

The Python blocks under that heading (in `README.md`; `docs/own_code.md`,
the section's source, until the README carries it) run in order as one
program in a fresh interpreter with 4 host CPU devices, so the sharding
snippet really splits its sweep. A `print(...)` whose trailing comment is a
literal output (`# (8,) (2, 32, 32, 3)`, `# True True`) must print exactly
that.
"""

import os
import re
import subprocess
import sys

from conftest import host_devices_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADING = "## Use it in your own code"
# Fake host devices for the sharding snippet (XLA's CPU flag, as in
# tests/test_sharding.py).
DEVICES = 4
# A trailing comment that is an exact expected output: tuples of ints,
# booleans.
_LITERAL = re.compile(r"^(?:[\d(),\s]|True|False)+$")


def section_text() -> tuple[str, str]:
  """`(path, text)` of the section: from README.md when it has the heading,
  else docs/own_code.md; the text runs to the next `## ` heading."""
  for path in ("README.md", os.path.join("docs", "own_code.md")):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
      text = f.read()
    start = text.find(HEADING + "\n")
    if start >= 0:
      body = text[start + len(HEADING):]
      end = re.search(r"^## ", body, re.M)
      return path, body[:end.start()] if end else body
  raise AssertionError(f"no {HEADING!r} section in README.md or docs/own_code.md")


def python_blocks(text: str) -> list[str]:
  return re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)


def expected_outputs(code: str) -> list[str]:
  """The literal outputs promised by `print(...)  # output` lines, in order."""
  out = []
  for line in code.splitlines():
    m = re.match(r"^\s*print\(.*\)\s+#\s*(.+?)\s*$", line)
    if m and _LITERAL.match(m.group(1)):
      out.append(m.group(1))
  return out


def test_section_has_the_promised_snippets():
  path, text = section_text()
  code = "\n".join(python_blocks(text))
  assert len(python_blocks(text)) >= 4, path
  for needle in ("models.load(", "O.evaluate(", "jax.vmap(", "jax.jit(",
                 "NamedSharding"):
    assert needle in code, f"{path}: {needle} missing from the section"


def test_snippets_run_as_written():
  path, text = section_text()
  code = "\n".join(python_blocks(text))
  env = host_devices_env(DEVICES)
  proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, f"{path} snippets failed:\n{proc.stderr[-3000:]}"
  printed = [l.strip() for l in proc.stdout.splitlines()]
  expected = expected_outputs(code)
  assert expected, "no print with a literal expected output"
  missing = [e for e in expected if e not in printed]
  assert not missing, f"{path}: expected {missing}, printed {printed}"
