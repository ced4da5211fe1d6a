"""Pictures a person wants to look at: PNG grids, labelled images, overlays.

Display code only (matplotlib, Pillow); no computation happens here. Every
file is written atomically.
"""

from typing import Optional, Sequence

import matplotlib
matplotlib.use("Agg")  # no display on servers / CI
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from cnnviz_jax.io import atomic_write


def to_uint8(image) -> np.ndarray:
  """float image in [0, 1] (values outside are clipped for display) -> uint8."""
  return (np.clip(np.asarray(image, np.float32), 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def enlarge(image, scale: int) -> np.ndarray:
  """Nearest-neighbour upscaling for display (`[H, W(, C)]`, each pixel a
  `scale` x `scale` block), so that small filters and CIFAR crops stay crisp."""
  return np.repeat(np.repeat(np.asarray(image), scale, 0), scale, 1)


def save_image(path: str, image) -> None:
  """Saves one float32 `[H, W, 3]` (or `[H, W]`) image in [0, 1] as PNG."""
  im = Image.fromarray(to_uint8(image))
  atomic_write(path, lambda tmp: im.save(tmp, format="PNG"))


TITLE_LINE = 0.15  # inches: one line of an 8-point title, with its leading


def save_grid(path: str, images: Sequence, *, titles: Optional[Sequence[str]] = None,
              row_titles: Optional[Sequence[str]] = None, ncols: Optional[int] = None,
              cmap: str = "viridis", size: float = 2.0, suptitle: str = "") -> None:
  """Saves a titled grid of images (matplotlib) as PNG.

  Args:
    path: output PNG path.
    images: sequence of `[H, W, 3]` float images in [0, 1] or `[H, W]` maps
      (maps are shown with `cmap`, scaled to their own range).
    titles: one title per image.
    row_titles: one label per row (left side).
    ncols: columns (default: all images in one row, at most 8).
    size: inches per cell's width; its height follows the images' median
      aspect ratio (landscape photographs get no empty bands), plus
      `TITLE_LINE` inches per title line beyond the first (two-line titles
      do not run into the row above).
  """
  n = len(images)
  if n == 0:
    raise ValueError(f"save_grid({path!r}) got no images; pass at least one.")
  for name, labels in (("titles", titles), ("row_titles", row_titles)):
    want = n if name == "titles" else -(-n // (ncols or min(n, 8)))
    if labels is not None and len(labels) < want:
      raise ValueError(f"{name} has {len(labels)} entries for {want} "
                       f"{'images' if name == 'titles' else 'rows'}.")
  ncols = ncols or min(n, 8)
  nrows = -(-n // ncols)
  aspect = float(np.median([np.shape(im)[0] / max(1, np.shape(im)[1])
                            for im in images])) if n else 1.0
  extra_lines = max((str(t).count("\n") for t in titles), default=0) if titles else 0
  fig, axes = plt.subplots(
      nrows, ncols, squeeze=False,
      figsize=(size * ncols, (size * aspect + TITLE_LINE * extra_lines) * nrows + 0.4))
  for i, ax in enumerate(axes.flat):
    ax.set_xticks([]), ax.set_yticks([])
    for s in ax.spines.values():
      s.set_visible(False)
    if i >= n:
      continue
    im = np.asarray(images[i], np.float32)
    if im.ndim == 2 or im.shape[-1] == 1:
      ax.imshow(im.squeeze(), cmap=cmap)
    else:
      ax.imshow(np.clip(im, 0, 1), interpolation="nearest" if im.shape[0] <= 64 else None)
    if titles is not None:
      ax.set_title(titles[i], fontsize=8)
    if row_titles is not None and i % ncols == 0:
      ax.set_ylabel(row_titles[i // ncols], fontsize=8)
  if suptitle:
    fig.suptitle(suptitle, fontsize=10)
  fig.tight_layout()

  def write(tmp):
    fig.savefig(tmp, format="png", dpi=100)
  try:
    atomic_write(path, write)
  finally:
    plt.close(fig)
