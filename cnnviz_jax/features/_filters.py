"""Learned filters as pictures, and a tiling helper for grids of tiles."""

from typing import Optional

import numpy as np

from cnnviz_jax.features import _receptive


def conv_layers(model) -> tuple[str, ...]:
  return tuple(l.name for l in model.layers if l.kind == "conv")


def filters(model, layer: Optional[str] = None) -> np.ndarray:
  """A convolution's weights, each filter scaled to [0, 1] on its own.

  The first layer's filters read RGB and show as colour pictures (the
  lecture's 64 AlexNet 11x11 filters); deeper filters read many channels and
  show as one grayscale tile per input channel.

  Args:
    model: a `Model`.
    layer: a conv layer (canonical or torchvision path); None: the first.

  Returns:
    float32 in [0, 1]: `[C_out, kh, kw, 3]` for a conv reading 3 channels,
    else `[C_out, C_in, kh, kw]`. Each output filter is min-max scaled over
    all its weights (a constant filter is 0.5).

  Raises:
    ValueError: `layer` is not a convolution.
  """
  _receptive.check_sequential(model, "filters")
  convs = conv_layers(model)
  name = convs[0] if layer is None else model.resolve(layer)
  if name not in convs:
    raise ValueError(f"filters needs a conv layer; {layer!r} is not one. "
                     f"Conv layers of {model.name}: {', '.join(convs)}.")
  w = np.asarray(model.params[name]["kernel"], np.float32)  # [kh, kw, in, out]
  w = np.moveaxis(w, -1, 0)                                  # [out, kh, kw, in]
  lo = w.min(axis=(1, 2, 3), keepdims=True)
  span = w.max(axis=(1, 2, 3), keepdims=True) - lo
  w = np.where(span > 0, (w - lo) / np.where(span > 0, span, 1), 0.5)
  if w.shape[-1] == 3:
    return w.astype(np.float32)
  return np.moveaxis(w, -1, 1).astype(np.float32)            # [out, in, kh, kw]


def mosaic(tiles, ncols: Optional[int] = None, *, pad: int = 1,
           fill: float = 1.0) -> np.ndarray:
  """Lays tiles out in a grid, row by row, as one picture.

  Args:
    tiles: `[N, h, w]` or `[N, h, w, 3]` images.
    ncols: tiles per row; default `ceil(sqrt(N))`.
    pad: pixels between tiles and around the border.
    fill: value of the padding and of empty cells.

  Returns:
    float32 `[rows * (h + pad) + pad, ncols * (w + pad) + pad(, 3)]`.
  """
  tiles = np.asarray(tiles, np.float32)
  if tiles.ndim not in (3, 4) or len(tiles) == 0:
    raise ValueError("tiles must be a non-empty [N, h, w] or [N, h, w, 3] "
                     f"array; got shape {tiles.shape}.")
  n, h, w = tiles.shape[:3]
  ncols = ncols or int(np.ceil(np.sqrt(n)))
  rows = -(-n // ncols)
  out = np.full((rows * (h + pad) + pad, ncols * (w + pad) + pad,
                 *tiles.shape[3:]), fill, np.float32)
  for i, t in enumerate(tiles):
    r, c = divmod(i, ncols)
    y, x = pad + r * (h + pad), pad + c * (w + pad)
    out[y:y + h, x:x + w] = t
  return out
