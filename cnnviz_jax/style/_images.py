"""Image handling for texture and style: any layout in, RGB `[1, H, W, 3]`
float32 in [0, 1] out; style scale; colour preservation (Gatys et al. 2017).
"""

from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from cnnviz_jax import image as image_lib

Array = jax.Array

# ITU-R BT.601 luma weights and the YIQ chroma axes (Gatys et al. 2017,
# section 3.1, transfer the luminance channel of YIQ).
_RGB_TO_YIQ = np.asarray([[0.299, 0.587, 0.114],
                          [0.596, -0.274, -0.322],
                          [0.211, -0.523, 0.312]], np.float32)
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ).astype(np.float32)

COLOR_MODES = (None, "luminance", "histogram")


def to_rgb(image, *, name: str = "image") -> Array:
  """Any single image as float32 `[1, H, W, 3]` RGB in [0, 1].

  Accepts `[H, W]` or `[H, W, 1]` grayscale (repeated to RGB), `[H, W, 4]`
  RGBA (alpha composited over white, the usual page background), `[H, W, 3]`
  and the same with a leading batch axis of 1; uint8 (0..255) or float in
  [0, 1].

  Raises:
    ValueError: another rank or channel count, several images, or values
      outside the range of the dtype.
  """
  x = np.asarray(image)
  if x.ndim == 4:
    if x.shape[0] != 1:
      raise ValueError(f"{name} must be one image; got a batch of {x.shape[0]} "
                       f"(shape {x.shape}).")
    x = x[0]
  if x.ndim == 2:
    x = x[..., None]
  if x.ndim != 3 or x.shape[-1] not in (1, 3, 4):
    raise ValueError(f"{name} must be [H, W], [H, W, 1|3|4] or [1, H, W, 1|3|4]; "
                     f"got shape {np.shape(image)}.")
  if x.dtype == np.uint8:
    x = x.astype(np.float32) / 255.0
  x = x.astype(np.float32)
  if not np.all(np.isfinite(x)) or x.min() < 0.0 or x.max() > 1.0:
    raise ValueError(f"{name} must hold values in [0, 1] (float) or 0..255 "
                     f"(uint8); got range [{x.min():.4g}, {x.max():.4g}].")
  if x.shape[-1] == 1:
    x = np.repeat(x, 3, axis=-1)
  elif x.shape[-1] == 4:
    alpha = x[..., 3:]
    x = x[..., :3] * alpha + (1.0 - alpha)
  return jnp.asarray(x[None])


def scale_to(style: Array, content_hw: tuple[int, int], scale: float,
             min_size: int) -> Array:
  """Resizes `style` `[1, h, w, 3]` so its longer side is `scale` times the
  content's longer side (neural-style's `-style_scale`), aspect kept.

  Raises:
    ValueError: the result would be smaller than the network's `min_size`.
  """
  if not scale > 0:
    raise ValueError(f"style_scale must be > 0; got {scale!r}.")
  h, w = style.shape[1:3]
  s = scale * max(content_hw) / max(h, w)
  hw = (max(1, round(h * s)), max(1, round(w * s)))
  if min(hw) < min_size:
    raise ValueError(f"style image {h}x{w} at style_scale {scale} becomes "
                     f"{hw[0]}x{hw[1]}, below the network's minimum "
                     f"{min_size}x{min_size}; use a larger style image or scale.")
  if hw == (h, w):
    return style
  # Antialiased when shrinking (jax.image.resize), so a large painting does not
  # alias into false texture.
  return jnp.clip(image_lib.resize(style, hw, "linear"), 0.0, 1.0)


def rgb_to_yiq(x: Array) -> Array:
  return x @ jnp.asarray(_RGB_TO_YIQ).T


def yiq_to_rgb(x: Array) -> Array:
  return x @ jnp.asarray(_YIQ_TO_RGB).T


def luminance_transfer(output: Array, content: Array) -> Array:
  """The output's luminance with the content's chroma (YIQ), in [0, 1]:
  colour preservation by luminance-only transfer (Gatys et al. 2017, 3.1)."""
  y = rgb_to_yiq(output)[..., :1]
  iq = rgb_to_yiq(content)[..., 1:]
  return jnp.clip(yiq_to_rgb(jnp.concatenate([y, iq], -1)), 0.0, 1.0)


def match_histograms(source: Array, reference: Array) -> Array:
  """Per-channel histogram matching: `source`'s values replaced by the
  `reference` quantiles of the same rank (exact for any image sizes).

  Args:
    source: float32 `[1, h, w, 3]` (the style, before transfer).
    reference: float32 `[1, H, W, 3]` (the content whose colours to keep).

  Returns:
    float32 `[1, h, w, 3]` in [0, 1] with the reference's colour histograms.
  """
  src = source.reshape(-1, 3)
  ref = jnp.sort(reference.reshape(-1, 3), axis=0)
  ranks = jnp.argsort(jnp.argsort(src, axis=0), axis=0)
  # Rank r of n -> quantile (r + 0.5) / n of the reference, interpolated.
  q = (ranks.astype(jnp.float32) + 0.5) / src.shape[0]
  pos = q * ref.shape[0] - 0.5
  lo = jnp.clip(jnp.floor(pos).astype(jnp.int32), 0, ref.shape[0] - 1)
  hi = jnp.clip(lo + 1, 0, ref.shape[0] - 1)
  frac = jnp.clip(pos - lo, 0.0, 1.0)
  cols = jnp.arange(3)[None]
  out = ref[lo, cols] * (1 - frac) + ref[hi, cols] * frac
  return out.reshape(source.shape)


def prepare_styles(styles: Sequence, content_hw: tuple[int, int], *,
                   scale: float, min_size: int, color: Optional[str] = None,
                   content: Optional[Array] = None) -> list[Array]:
  """Style images as `[1, h, w, 3]` RGB in [0, 1], scaled; with
  `color="histogram"`, their colours matched to `content`."""
  if color not in COLOR_MODES:
    raise ValueError(f"preserve_color must be one of {COLOR_MODES}; got {color!r}.")
  out = []
  for i, s in enumerate(styles):
    s = scale_to(to_rgb(s, name=f"styles[{i}]"), content_hw, scale, min_size)
    if color == "histogram":
      s = match_histograms(s, content)
    out.append(s)
  return out
