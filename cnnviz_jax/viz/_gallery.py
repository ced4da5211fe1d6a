"""An HTML page of figures: sections with captioned pictures and the measured
figures beside each one (display only; every file is written atomically).

    viz.save_html_gallery("runs/gallery/index.html", [
        viz.Section("occlusion", "Occlusion", "What the network needs to see.",
                    [viz.Figure("occlusion.png", "Occlusion maps (Zeiler & Fergus 2014)",
                                {"p(true class)": 0.93})], seconds=3.1)])

The page is static HTML and CSS with no script, so it opens from disk in any
browser; pictures are linked by paths relative to the page.
"""

import html
import json
import os
from typing import Any, Mapping, NamedTuple, Optional, Sequence, Union

import numpy as np

from cnnviz_jax.io import atomic_write


class Figure(NamedTuple):
  """One picture of a section.

  path: the image file (absolute, or relative to the page's folder).
  caption: the technique and its paper.
  metrics: label -> measured value, shown beside the picture.
  pixelated: draw enlarged without smoothing (small images: CIFAR's 32x32).
  width: display width in CSS pixels (None: the image's own, at most the
    column).
  """
  path: str
  caption: str
  metrics: Mapping[str, Any] = {}
  pixelated: bool = False
  width: Optional[int] = None


class Section(NamedTuple):
  """One topic of the page.

  name: the anchor id (letters, digits, `_`, `-`).
  title: the heading.
  text: a paragraph under the heading.
  figures: its pictures.
  seconds: the time it took (None: not shown).
  note: shown in place of the figures when there are none (e.g. why a
    section was skipped).
  """
  name: str
  title: str
  text: str = ""
  figures: Sequence[Figure] = ()
  seconds: Optional[float] = None
  note: str = ""


# A value's printed precision: 3 significant digits are what the eye compares.
_DIGITS = 3
# Lists longer than this are cut in the page (the JSON beside it has them all).
_MAX_ITEMS = 12

_CSS = """
body{font-family:sans-serif;max-width:1150px;margin:auto;padding:0 12px;color:#222}
nav ol{columns:2}
section{border-top:1px solid #ccc;margin-top:24px}
figure{display:flex;flex-wrap:wrap;gap:16px;margin:12px 0;align-items:flex-start}
figure img{max-width:720px;border:1px solid #ccc}
img.px{image-rendering:pixelated}
figcaption{flex:1;min-width:260px;font-size:14px}
table{border-collapse:collapse;font-size:13px;margin-top:6px}
td{border-bottom:1px solid #eee;padding:2px 8px;vertical-align:top}
.time{color:#666;font-size:13px}
.note{color:#a33}
"""


def format_value(value: Any) -> str:
  """A measured value as short text: floats to 3 significant digits, lists
  and dicts element-wise (long lists cut with their length)."""
  if isinstance(value, (np.generic, np.ndarray)):
    value = value.tolist()
  if isinstance(value, bool) or value is None:
    return str(value)
  if isinstance(value, float):
    return f"{value:.{_DIGITS}g}"
  if isinstance(value, Mapping):
    return ", ".join(f"{k}: {format_value(v)}" for k, v in value.items())
  if isinstance(value, (list, tuple)):
    shown = ", ".join(format_value(v) for v in value[:_MAX_ITEMS])
    more = f", ... ({len(value)} in all)" if len(value) > _MAX_ITEMS else ""
    return f"[{shown}{more}]"
  return str(value)


def _figure_html(fig: Figure, root: str) -> str:
  path = fig.path if os.path.isabs(fig.path) else os.path.join(root, fig.path)
  if not os.path.isfile(path):
    # A missing picture would be a broken image in the page: fail here,
    # naming it, rather than ship the page.
    raise FileNotFoundError(f"gallery figure {path!r} does not exist.")
  rel = html.escape(os.path.relpath(os.path.abspath(path), root))
  style = f" style='width:{int(fig.width)}px'" if fig.width else ""
  cls = " class='px'" if fig.pixelated else ""
  rows = "".join(f"<tr><td>{html.escape(str(k))}</td>"
                 f"<td>{html.escape(format_value(v))}</td></tr>"
                 for k, v in fig.metrics.items())
  table = f"<table>{rows}</table>" if rows else ""
  return (f"<figure><a href='{rel}'><img src='{rel}'{cls}{style} "
          f"alt='{html.escape(fig.caption)}'></a>"
          f"<figcaption>{html.escape(fig.caption)}{table}</figcaption></figure>")


def _as_section(s: Union[Section, tuple], i: int) -> Section:
  if isinstance(s, Section):
    return s
  heading, text, images = s   # the older (heading, text, [paths]) form
  return Section(f"s{i}", heading, text,
                 [Figure(p, heading) for p in images])


def save_html_gallery(path: str, sections: Sequence[Union[Section, tuple]], *,
                      title: str = "cnnviz_jax gallery", intro: str = "",
                      summary: Optional[Mapping[str, Any]] = None,
                      links: Sequence[tuple[str, str]] = ()) -> None:
  """Writes the page: a title, an intro, a summary table, a table of
  contents and one `<section>` per entry.

  Args:
    path: the `.html` file; pictures and links are made relative to its
      folder.
    sections: `Section`s (or `(heading, text, [image paths])` tuples).
    title: the page title.
    intro: a paragraph under the title.
    summary: label -> value, a table under the intro (e.g. the model and its
      accuracy, the total time).
    links: `(text, path)` links under the summary (e.g. `metrics.json`),
      relative to the page's folder.

  Raises:
    FileNotFoundError: a figure or a linked file does not exist.
    ValueError: two sections share a name.
  """
  root = os.path.dirname(os.path.abspath(path))
  sections = [_as_section(s, i) for i, s in enumerate(sections)]
  names = [s.name for s in sections]
  if len(set(names)) != len(names):
    raise ValueError(f"section names must be unique; got {names}.")
  esc = html.escape
  parts = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>",
           f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
           f"<h1>{esc(title)}</h1>"]
  if intro:
    parts.append(f"<p>{esc(intro)}</p>")
  if summary:
    parts.append("<table>" + "".join(
        f"<tr><td>{esc(str(k))}</td><td>{esc(format_value(v))}</td></tr>"
        for k, v in summary.items()) + "</table>")
  for text, target in links:
    if not os.path.exists(os.path.join(root, target)):
      raise FileNotFoundError(f"gallery link {target!r} does not exist in {root}.")
    parts.append(f"<p><a href='{esc(target)}'>{esc(text)}</a></p>")
  parts.append("<nav><ol>" + "".join(
      f"<li><a href='#{esc(s.name)}'>{esc(s.title)}</a></li>" for s in sections)
               + "</ol></nav>")
  for s in sections:
    timing = (f" <span class='time'>({s.seconds:.1f} s)</span>"
              if s.seconds is not None else "")
    parts.append(f"<section id='{esc(s.name)}'><h2>{esc(s.title)}{timing}</h2>")
    if s.text:
      parts.append(f"<p>{esc(s.text)}</p>")
    parts.extend(_figure_html(f, root) for f in s.figures)
    if s.note:
      parts.append(f"<p class='note'>{esc(s.note)}</p>")
    parts.append("</section>")
  parts.append("</body></html>")
  page = "\n".join(parts)

  def write(tmp):
    with open(tmp, "w", encoding="utf-8") as f:
      f.write(page)
  atomic_write(path, write)


def sections_json(sections: Sequence[Section]) -> list[dict]:
  """The sections as JSON-ready dicts (name, title, seconds, note, figures
  with their captions and metrics), for a `metrics.json` beside the page."""
  return [{"name": s.name, "title": s.title, "seconds": s.seconds,
           "note": s.note,
           "figures": [{"path": f.path, "caption": f.caption,
                        "metrics": json.loads(json.dumps(
                            dict(f.metrics), default=_jsonable))}
                       for f in s.figures]} for s in sections]


def _jsonable(value):
  if isinstance(value, (np.generic, np.ndarray)):
    return value.tolist()
  return str(value)
