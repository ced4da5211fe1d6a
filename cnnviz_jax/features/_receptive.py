"""Receptive fields computed from the architecture (`model.layers`).

Convolutions and max pools are windows `(kernel, stride, padding)`; a unit at
position `i` of a window layer reads positions `[i * s - p, i * s - p + k)` of
its input. Chaining these gives, for every spatial layer, a receptive field
`size` (input pixels), `stride` (the jump between neighbouring units) and
`offset` (the first input row/column, possibly negative, that unit 0 reads):
unit `y` reads input rows `[offset + y * stride, offset + y * stride + size)`
(Araujo et al., "Computing receptive fields of convolutional neural networks",
Distill 2019). Adaptive average pools (torchvision's `avgpool`) depend on the
input size: an identity at the size they are built for, a window where the
size divides evenly, and bins of unequal size otherwise, for which
`receptive_box` still gives each unit's exact box.
"""

from typing import NamedTuple, Optional

import numpy as np

_SPATIAL_KINDS = ("conv", "bn", "relu", "maxpool", "adaptive_avgpool",
                  "dropout")
_IDENTITY_KINDS = ("bn", "relu", "dropout")


class Field(NamedTuple):
  """Receptive field of a spatial layer's units, in input pixels (one axis:
  the zoo's kernels are square, and `receptive_field` checks both axes)."""
  size: int
  stride: int
  offset: int


class _Step(NamedTuple):
  """One spatial operation on one axis: `adaptive` False: a window
  `(kernel, stride, padding)`; True: an adaptive pool from `n_in` to
  `n_out` bins."""
  name: str
  kernel: int
  stride: int
  padding: int
  adaptive: bool
  n_in: int
  n_out: int


def spatial_layers(model) -> tuple[str, ...]:
  """Names of the layers whose activations are `[N, h, w, C]` maps (for a
  wrapped model, `models.from_flax`, the taps of rank 3 per image)."""
  if not hasattr(model, "layers"):
    return tuple(n for n in model.layer_names if len(model.layer_shape(n)) == 3)
  out = []
  for layer in model.layers:
    if layer.kind not in _SPATIAL_KINDS:
      break
    out.append(layer.name)
  return tuple(out)


def check_sequential(model, what: str) -> None:
  """ValueError unless `model` lists its layers (`models.load`/`build`)."""
  if not hasattr(model, "layers"):
    raise ValueError(
        f"{what} is computed from the architecture, a sequential model's "
        f"`layers` (models.load or models.build); {model.name!r} is a wrapped "
        "network without a layer list.")


def check_spatial(model, layer: str, what: str) -> str:
  """Canonical name of `layer`; ValueError unless it is a spatial layer."""
  name = model.resolve(layer)
  if name not in spatial_layers(model):
    raise ValueError(
        f"{what} needs a layer with spatial extent; {layer!r} of {model.name} "
        f"has none (after a global or flattening layer each unit sees the "
        f"whole image). Spatial layers: {', '.join(spatial_layers(model))}.")
  return name


def _steps(model, layer: str, hw: tuple[int, int]) -> tuple[list, list]:
  """Per-axis `_Step`s from the input up to and including `layer`."""
  check_sequential(model, "a receptive field")
  name = check_spatial(model, layer, "a receptive field")
  axes = ([], [])
  size = list(hw)
  for l in model.layers:
    kw = l.kw
    for a in (0, 1):
      n = size[a]
      if l.kind == "conv":
        k, s, p = kw["kernel"], kw.get("stride", 1), kw.get("padding", 0)
        step = _Step(l.name, k, s, p, False, n, (n + 2 * p - k) // s + 1)
      elif l.kind == "maxpool":
        k, s = kw["window"], kw["stride"]
        step = _Step(l.name, k, s, 0, False, n, (n - k) // s + 1)
      elif l.kind == "adaptive_avgpool":
        step = _Step(l.name, 0, 0, 0, True, n, kw["size"][a])
      elif l.kind in _IDENTITY_KINDS:
        continue
      else:  # unreachable: check_spatial stops at the first non-spatial layer
        raise ValueError(f"layer kind {l.kind!r} has no receptive field.")
      if step.n_out < 1:
        raise ValueError(f"input {hw[0]}x{hw[1]} is too small for "
                         f"{model.name}: layer {l.name} has no output.")
      axes[a].append(step)
      size[a] = step.n_out
    if l.name == name:
      break
  return axes


def _field_1d(steps) -> Field:
  size, stride, offset = 1, 1, 0
  for st in steps:
    if st.adaptive:
      if st.n_in == st.n_out:
        continue  # identity at this input size
      if st.n_in % st.n_out:
        raise ValueError(
            f"adaptive pool {st.name} maps {st.n_in} positions to "
            f"{st.n_out} bins of unequal size, so its units have no common "
            "receptive field at this input size; use receptive_box(model, "
            "layer, y, x, hw) for the box of each unit, or an input size "
            "where the bins divide evenly.")
      k = s = st.n_in // st.n_out
      p = 0
    else:
      k, s, p = st.kernel, st.stride, st.padding
    offset -= p * stride
    size += (k - 1) * stride
    stride *= s
  return Field(size, stride, offset)


def receptive_field(model, layer: str,
                    image_hw: Optional[tuple[int, int]] = None) -> Field:
  """Receptive field of `layer`'s units, from the architecture.

  Args:
    model: a `Model` (only `model.layers` is read; params may be None).
    layer: a spatial layer name (canonical or torchvision path).
    image_hw: the input `(H, W)`; matters only for adaptive pools. Default:
      `model.input_size`.

  Returns:
    `Field(size, stride, offset)` in input pixels: unit `(y, x)` reads rows
    `[offset + y * stride, offset + y * stride + size)` and the same columns
    with `x` (before clipping to the image: `offset` < 0 means padding).
    VGG16 `conv5_3`: `Field(196, 16, -90)`; AlexNet `conv5`:
    `Field(163, 16, -66)`.

  Raises:
    ValueError: unknown or non-spatial layer; an adaptive pool with unequal
      bins at this size; axes with different fields.
  """
  hw = tuple(image_hw or model.input_size)
  ys, xs = _steps(model, layer, hw)
  fy, fx = _field_1d(ys), _field_1d(xs)
  if fy != fx:
    raise ValueError(f"layer {layer!r} has different receptive fields along "
                     f"rows {fy} and columns {fx} at input {hw}; use "
                     "receptive_box for each unit.")
  return fy


def layer_hw(model, layer: str, image_hw: tuple[int, int]) -> tuple[int, int]:
  """`(h, w)` of a spatial layer's maps for input `image_hw` (arithmetic on
  `model.layers`, no tracing)."""
  ys, xs = _steps(model, layer, tuple(image_hw))
  return (ys[-1].n_out if ys else image_hw[0], xs[-1].n_out if xs else image_hw[1])


def _box_1d(steps, idx: np.ndarray, n_image: int) -> tuple[np.ndarray, np.ndarray]:
  """Exact half-open input intervals `[lo, hi)` read by units `idx`.

  Walks back from the layer; at every layer the interval is first clipped to
  the positions that exist there (padding positions read nothing), which is
  what makes the box exact for floor-mode pools that drop trailing rows.
  """
  lo = np.asarray(idx, np.int64)
  hi = lo + 1
  for st in reversed(steps):
    lo, hi = np.clip(lo, 0, st.n_out), np.clip(hi, 0, st.n_out)
    if st.adaptive:
      # torch AdaptiveAvgPool bin i: [floor(i n / m), ceil((i + 1) n / m)).
      lo, hi = (lo * st.n_in) // st.n_out, -((-hi * st.n_in) // st.n_out)
    else:
      lo, hi = lo * st.stride - st.padding, (hi - 1) * st.stride - st.padding + st.kernel
  return np.clip(lo, 0, n_image), np.clip(hi, 0, n_image)


def receptive_boxes(model, layer: str, ys, xs,
                    image_hw: tuple[int, int]) -> np.ndarray:
  """`receptive_box` for many units: int `[..., 4]` rows `(y0, x0, y1, x1)`."""
  ysteps, xsteps = _steps(model, layer, tuple(image_hw))
  ys, xs = np.asarray(ys), np.asarray(xs)
  h, w = layer_hw(model, layer, image_hw)
  if ys.size and (ys.min() < 0 or ys.max() >= h or xs.min() < 0 or xs.max() >= w):
    raise ValueError(f"unit position out of range: layer {layer!r} is {h}x{w} "
                     f"at input {image_hw[0]}x{image_hw[1]}; got y in "
                     f"[{ys.min()}, {ys.max()}], x in [{xs.min()}, {xs.max()}].")
  y0, y1 = _box_1d(ysteps, ys, image_hw[0])
  x0, x1 = _box_1d(xsteps, xs, image_hw[1])
  return np.stack([y0, x0, y1, x1], -1)


def receptive_box(model, layer: str, y: int, x: int,
                  image_hw: tuple[int, int]) -> tuple[int, int, int, int]:
  """The input crop that unit `(y, x)` of `layer` reads, clipped to the image.

  Args:
    model: a `Model`.
    layer: a spatial layer name.
    y, x: the unit's position in the layer's `[h, w]` map.
    image_hw: the input `(H, W)`.

  Returns:
    `(y0, x0, y1, x1)`, half open: the crop is `image[y0:y1, x0:x1]`. Exact
    (every pixel in it can change the unit, no other can), also for floor-mode
    pools and adaptive pools.
  """
  return tuple(int(v) for v in receptive_boxes(model, layer, y, x, image_hw))
