"""Heatmaps from attributions, display scaling and overlays."""

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

# Channel reductions of attributions `[N, H, W, C]` -> `[N, H, W]`.
REDUCTIONS = {
    "max_abs": lambda a: jnp.abs(a).max(axis=-1),
    "sum": lambda a: a.sum(axis=-1),
    "abs_sum": lambda a: jnp.abs(a).sum(axis=-1),
    "norm": lambda a: jnp.sqrt((a ** 2).sum(axis=-1)),
}


def heatmap(attributions: Array, reduce: str = "max_abs") -> Array:
  """Per-pixel map `[N, H, W]` from attributions `[N, H, W, 3]`.

  Args:
    attributions: float `[N, H, W, C]` (maps `[N, H, W]` pass through).
    reduce: over channels: "max_abs" (Simonyan et al. 2014, section 3.1),
      "sum" (signed), "abs_sum", or "norm" (L2).

  Returns:
    float `[N, H, W]`.
  """
  if reduce not in REDUCTIONS:
    # Checked before the pass-through of maps, so a typo never goes unseen.
    raise ValueError(f"unknown reduce {reduce!r}; valid: {', '.join(REDUCTIONS)}.")
  if attributions.ndim == 3:
    return attributions
  if attributions.ndim != 4:
    raise ValueError(f"attributions must be [N, H, W, C] (or maps [N, H, W]); "
                     f"got shape {attributions.shape}.")
  return REDUCTIONS[reduce](attributions)


def normalize(maps: Array, *, percentile: float = 99.0, signed: bool = False) -> Array:
  """Scales each map `[N, ...]` for display.

  Args:
    maps: float `[N, ...]`.
    percentile: values at or above this percentile of |map| become 1 (99, as
      Smilkov et al. 2017, caps outliers).
    signed: keep the sign: map to [-1, 1]; otherwise map [min, pct] to [0, 1].

  Returns:
    same shape, in [0, 1] (or [-1, 1] when `signed`).
  """
  flat = maps.reshape(maps.shape[0], -1)
  eps = 1e-12
  if signed:
    top = jnp.percentile(jnp.abs(flat), percentile, axis=1)
    return jnp.clip(maps / (top.reshape(-1, *[1] * (maps.ndim - 1)) + eps), -1, 1)
  lo = flat.min(axis=1)
  top = jnp.percentile(flat, percentile, axis=1)
  shape = (-1, *[1] * (maps.ndim - 1))
  return jnp.clip((maps - lo.reshape(shape)) /
                  (top - lo + eps).reshape(shape), 0, 1)


def overlay(images, maps, *, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
  """Blends colour-mapped `[N, h, w]` maps (any range; normalized here,
  upsampled bilinearly when smaller) onto `[N, H, W, 3]` images.

  Returns:
    float32 numpy `[N, H, W, 3]` in [0, 1].
  """
  import matplotlib  # display only; imported lazily
  maps = jnp.asarray(maps, jnp.float32)
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError("overlay needs images [N, H, W, 3]; got shape "
                     f"{images.shape}.")
  if maps.ndim != 3 or maps.shape[0] != images.shape[0]:
    raise ValueError(f"overlay needs maps [N, h, w] with N = {images.shape[0]} "
                     f"(one per image; reduce channels with heatmap()); got "
                     f"shape {tuple(maps.shape)}.")
  if cmap not in matplotlib.colormaps:
    raise ValueError(f"unknown cmap {cmap!r}; use a matplotlib colormap name "
                     "such as 'jet', 'viridis', 'inferno'.")
  if maps.shape[1:3] != images.shape[1:3]:
    maps = jax.image.resize(maps, (maps.shape[0], *images.shape[1:3]),
                            "bilinear")
  colours = matplotlib.colormaps[cmap](np.asarray(normalize(maps)))[..., :3]
  return ((1 - alpha) * np.asarray(images, np.float32) +
          alpha * colours.astype(np.float32)).clip(0, 1)


def save_grid(path: str, images, maps: dict, *, row_titles=None,
              overlay_alpha: Optional[float] = None) -> None:
  """Saves a PNG grid: one row per image, columns = image then each method.

  Args:
    path: output PNG.
    images: float32 `[N, H, W, 3]` in [0, 1].
    maps: `{method name: [N, h, w] map}` (e.g. `heatmap(...)` outputs).
    row_titles: optional label per image.
    overlay_alpha: None shows maps alone; a float blends them on the image.
  """
  from cnnviz_jax.viz import _grids as pictures  # matplotlib, display only
  images = np.asarray(images)
  cells, titles = [], []
  for i in range(images.shape[0]):
    cells.append(images[i])
    titles.append("image")
    for name, m in maps.items():
      m = jnp.asarray(m[i:i + 1], jnp.float32)
      if overlay_alpha is None:
        cells.append(np.asarray(normalize(m))[0])
      else:
        cells.append(overlay(images[i:i + 1], m, alpha=overlay_alpha)[0])
      titles.append(name)
  pictures.save_grid(path, cells, titles=titles, row_titles=row_titles,
                     ncols=1 + len(maps))


