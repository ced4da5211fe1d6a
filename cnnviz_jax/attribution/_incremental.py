"""Occlusion by incremental evaluation: only what the patch reaches is
recomputed.

Covering a patch changes a conv layer's input only in a rectangle, hence its
output only in a slightly larger one (the kernel's reach, divided by the
stride); layers up to the first one that mixes all positions (a global or
adaptive pool, flatten, dense) see only that growing rectangle change. So the
clean images run once, keeping the input of every layer (the "base"), and for
each patch position only the changed region of each layer's activation is
carried: a static size per layer, a dynamic start per position. A conv or max
pool computes its output region from the slice of its (zero-padded) base
input that the region needs, the changed input region overlaid; elementwise
layers (the input normalization, bn, relu) act on the region alone. At the
first layer that mixes positions, once the region covers the whole map, or at
the layer of an objective's tap, the full occluded map (the base with the
region overlaid) goes through the rest of the network as usual
(`Model.apply_from`). Values equal the full recompute up to float rounding
(the same products, summed by convolutions of other sizes).

Only sequential zoo models (`models.Model`) take this path, and only when it
saves enough (`choose`); other models (ResNets, wrapped models), objectives on
the input image and geometries where the region fills the map at once run the
full recompute.

Measured on this machine's CPU (2-core AMD EPYC, shared with other jobs; jax
0.10.2), whole `occlusion` calls of `experiments/bench_attribution.py`'s rows
(fill 0.5, logits), full recompute vs incremental alternately, median of 5
per-pair ratios (`/tmp`-style scratch script): VGG16 (random weights) 224x224
batch 4, window 64 stride 32, 4 positions per call: 27.4 s -> 9.35 s (2.92x;
the conv and dense MACs are 0.31 of the full recompute's, a bound of 3.2x);
cifar_vgg batch 256, window 8 stride 4, 1 position per call: 21.0 s -> 14.7 s
(1.43x; MACs 0.70). Per call of one chunk, against the MAC fraction: cifar_vgg
window 12 (0.77) 1.26x, 16 (0.86) 1.05x, 20 (0.96) 0.93x; VGG16 window 128
(0.63) 1.33x, 160 (0.79) 1.17x: hence `MAX_MACS_RATIO`.

Region geometry, per axis: a conv / max pool with kernel k, stride s, padding p
on an H-row input whose rows [y0, y0 + R) changed changes output rows o with
ceil((y0 + p - k + 1) / s) <= o <= floor((y0 + R - 1 + p) / s): at most
R' = min(Ho, (R + k - 2) // s + 1) rows, taken from
o0 = clamp(ceil((y0 + p - k + 1) / s), 0, Ho - R'), which covers them all. They
read padded input rows [s o0, s o0 + s (R' - 1) + k).
"""

import functools
from typing import NamedTuple, Optional

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from cnnviz_jax.attribution._common import _score_copies
from cnnviz_jax.models import core
from cnnviz_jax.models.conv import Conv

Array = jax.Array

_LOCAL = ("conv", "maxpool", "bn", "relu", "dropout")


class Step(NamedTuple):
  """Static geometry of one layer on the region (per axis pairs `(h, w)`).

  Attributes:
    kernel, stride, pad: the window (1, 1, 0 for elementwise layers, but
      conv / max pool layers are told apart by their kind).
    out_map: the layer's output map size.
    out_region: the output region's size.
    contained: the input region always lies inside the slice read (then it
      is written into it directly, else overlaid with a mask that crops).
  """
  kernel: tuple
  stride: tuple
  pad: tuple
  out_map: tuple
  out_region: tuple
  contained: bool


class Plan(NamedTuple):
  """`steps[i]` for layers `i < stop`; from layer `stop` on, the full map
  (the base with the region overlaid) goes through the network as usual."""
  steps: tuple
  stop: int


def _window(layer: core.Layer) -> Optional[tuple[int, int, int]]:
  kw = layer.kw
  if layer.kind == "conv":
    return kw["kernel"], kw.get("stride", 1), kw.get("padding", 0)
  if layer.kind == "maxpool":
    return kw["window"], kw["stride"], 0
  return None


def _start(y0, k: int, s: int, p: int, out_n: int, r_out: int):
  """First output row of the region (see the module docstring)."""
  if r_out == out_n:
    return jnp.zeros_like(y0)
  return jnp.clip(-(-(y0 + p - k + 1) // s), 0, out_n - r_out)


def _always_inside(n: int, r: int, k: int, s: int, p: int, out_n: int,
                   r_out: int) -> bool:
  """Whether input rows [y0, y0 + r) lie inside the slice read, for every
  start y0 in [0, n - r] (checked one by one, in Python)."""
  size = s * (r_out - 1) + k
  for y0 in range(n - r + 1):
    o0 = 0 if r_out == out_n else min(max(-(-(y0 + p - k + 1) // s), 0),
                                      out_n - r_out)
    if not s * o0 <= y0 + p <= y0 + p + r <= s * o0 + size:
      return False
  return True


@functools.lru_cache(maxsize=None)
def plan(layers: tuple, image_hw: tuple, window: tuple,
         last: Optional[int]) -> Optional[Plan]:
  """The layers run on the region for a patch of size `window` on images of
  size `image_hw`; None when no layer would be (the full recompute then).

  Args:
    layers: the model's `Layer`s.
    image_hw: `(H, W)`.
    window: the patch `(h, w)`.
    last: the index of the earliest layer whose output the objective reads
      (the region stops after it), or None.
  """
  hw, region, steps = tuple(image_hw), tuple(window), []
  for i, layer in enumerate(layers):
    if layer.kind not in _LOCAL or (last is not None and i > last):
      break
    geo = _window(layer)
    if geo is None:  # elementwise
      steps.append(Step((1, 1), (1, 1), (0, 0), hw, region, True))
      continue
    k, s, p = geo
    out = tuple((n + 2 * p - k) // s + 1 for n in hw)
    r_out = tuple(min(o, (r + k - 2) // s + 1) for o, r in zip(out, region))
    if r_out == out:  # the whole output changes: the layer runs as usual
      break
    inside = all(_always_inside(n, r, k, s, p, o, ro)
                 for n, r, o, ro in zip(hw, region, out, r_out))
    steps.append(Step((k, k), (s, s), (p, p), out, r_out, inside))
    hw, region = out, r_out
  if not steps:
    return None
  return Plan(tuple(steps), len(steps))


def _tap_range(model, objective) -> tuple[Optional[int], Optional[int]]:
  """Indices of the earliest and the deepest layer the objective reads (-1:
  the input image; None: none, resp. the logits)."""
  taps = [t for t in objective.taps if t != "logits"]
  if "input" in taps:
    return -1, None
  layers = [model.layer_index(t) for t in taps]
  return (min(layers, default=None),
          None if "logits" in objective.taps else max(layers))


def macs(model, image_hw: tuple, p: Plan,
         deepest: Optional[int] = None) -> tuple[int, int]:
  """Multiply-accumulates per image and patch position of the conv and dense
  layers up to layer `deepest` (None: all): `(full recompute, incremental)`."""
  hw, full, inc = tuple(image_hw), 0, 0
  for i, layer in enumerate(model.layers[:None if deepest is None else deepest + 1]):
    if layer.kind in ("conv", "maxpool"):
      k, s, pad = _window(layer)
      hw = tuple((n + 2 * pad - k) // s + 1 for n in hw)
    if layer.kind in ("conv", "dense"):  # kernel size: MACs per output pixel
      per_px = int(np.prod(np.shape(model.params[layer.name]["kernel"])))
      out, region = ((1, 1), (1, 1)) if layer.kind == "dense" else (
          hw, p.steps[i].out_region if i < p.stop else hw)
      full += out[0] * out[1] * per_px
      inc += region[0] * region[1] * per_px
  return int(full), int(inc)


# The incremental evaluation is used when its conv and dense MACs are at most
# this fraction of the full recompute's (see `choose`); the break-even measured
# near 0.9 (the module docstring), its slicing and overlays cost the rest.
MAX_MACS_RATIO = 0.8


def choose(model, image_hw: tuple, window: tuple, objective,
           force: Optional[bool] = None) -> Optional[Plan]:
  """The `Plan` to evaluate occlusion with, or None for the full recompute.

  Args:
    model: any model; only a `models.Model` can get a plan.
    image_hw: `(H, W)`.
    window: the patch `(h, w)`.
    objective: the resolved objective (its taps limit the plan).
    force: True: a plan wherever one exists; False: None; None: a plan only
      when `macs` says it saves enough (`MAX_MACS_RATIO`).
  """
  if force is False or not isinstance(model, core.Model):
    return None
  first, deepest = _tap_range(model, objective)
  if first == -1:  # an objective on the input image
    return None
  p = plan(model.layers, tuple(image_hw), tuple(window), first)
  if p is None or force:
    return p
  full, inc = macs(model, image_hw, p, deepest)
  return p if inc <= MAX_MACS_RATIO * full else None


@functools.partial(jax.jit, static_argnames=("p",))
def base(model, images: Array, p: Plan) -> dict:
  """The clean activations the regions are overlaid on: `{i: input of layer
  i}`, zero-padded by the layer's padding (`[N, H + 2p, W + 2p, C]`), for the
  conv / max pool layers `i < p.stop` and (unpadded) for `i = p.stop`."""
  want = [i for i in range(p.stop) if _window(model.layers[i])] + [p.stop]
  names = tuple(sorted({model.layers[i - 1].name for i in want if i > 0}))
  acts = (model.apply(model.params, images, taps=names, logits=False)[1]
          if names else {})
  out = {}
  for i in want:
    x = model.normalize(images) if i == 0 else acts[model.layers[i - 1].name]
    pad = p.steps[i].pad if i < p.stop else (0, 0)
    out[i] = jnp.pad(x, ((0, 0), (pad[0],) * 2, (pad[1],) * 2, (0, 0)))
  return out


def _overlay(slab: Array, region: Array, dy, dx, contained: bool) -> Array:
  """`slab` `[N, S, S', C]` with `region` `[N, R, R', C]` written at offset
  `(dy, dx)`; rows and columns of the region outside the slab are dropped
  (`dynamic_update_slice` would move the region inside instead, so that is
  used only when `contained`)."""
  if contained:
    return lax.dynamic_update_slice(slab, region, (0, dy, dx, 0))
  (sy, sx), (ry, rx) = slab.shape[1:3], region.shape[1:3]
  padded = jnp.pad(region, ((0, 0), (sy, sy), (sx, sx), (0, 0)))
  shifted = lax.dynamic_slice(padded, (0, sy - dy, sx - dx, 0), slab.shape)
  iy, ix = jnp.arange(sy), jnp.arange(sx)
  mask = (((iy >= dy) & (iy < dy + ry))[:, None] &
          ((ix >= dx) & (ix < dx + rx))[None, :])
  return jnp.where(mask[None, :, :, None], shifted, slab)


def _layer(layer: core.Layer, params, x: Array) -> Array:
  """One local layer on a region (conv / max pool: on the padded slice, so
  without padding of their own), as `SequentialNet` runs it."""
  kw = layer.kw
  if layer.kind == "conv":
    # One zero row below, its output row (if any) cropped: XLA:CPU (jax
    # 0.10.2) ran unpadded convolutions 2-4x slower than padded ones (3x3
    # 128->128 from 12x12 slabs, batch 256: 162 ms unpadded, 64 ms so).
    k, s = kw["kernel"], kw.get("stride", 1)
    y = Conv(kw["features"], k, strides=s, padding=((0, 1), (0, 0))).apply(
        {"params": params[layer.name]}, x)
    return y[:, :(x.shape[1] - k) // s + 1]
  if layer.kind == "maxpool":
    return core.max_pool(x, kw["window"], kw["stride"])
  if layer.kind == "bn":
    return core.FrozenBatchNorm(kw.get("eps", 1e-5)).apply(
        {"params": params[layer.name]}, x)
  if layer.kind == "relu":
    return jax.nn.relu(x)
  return x  # dropout: identity at inference


def occluded_map(model, p: Plan, base_acts: dict, fill: Array, window: tuple,
                 y, x) -> Array:
  """The input of layer `p.stop` for the images with the patch at `(y, x)`
  covered by `fill`.

  Args:
    model: a `Model`.
    p: `plan(...)` for this model, image size and window.
    base_acts: `base(model, images, p)`.
    fill: float32 `[N, H, W, 3]`, what covers the patch.
    window: the patch `(h, w)`, static.
    y, x: int32 scalars, the patch's top left corner.

  Returns:
    float32 `[N, h, w, C]`, the activation that layer `p.stop` receives.
  """
  n, c = fill.shape[0], fill.shape[-1]
  region = model.normalize(lax.dynamic_slice(fill, (0, y, x, 0), (n, *window, c)))
  for i, (layer, st) in enumerate(zip(model.layers, p.steps)):
    if _window(layer) is None:  # elementwise
      region = _layer(layer, model.params, region)
      continue
    starts = [_start(z, k, s, pad, o, ro) for z, k, s, pad, o, ro in zip(
        (y, x), st.kernel, st.stride, st.pad, st.out_map, st.out_region)]
    size = [s * (ro - 1) + k for s, ro, k in zip(st.stride, st.out_region, st.kernel)]
    slab = lax.dynamic_slice(
        base_acts[i], (0, starts[0] * st.stride[0], starts[1] * st.stride[1], 0),
        (n, *size, region.shape[-1]))
    slab = _overlay(slab, region, y + st.pad[0] - starts[0] * st.stride[0],
                    x + st.pad[1] - starts[1] * st.stride[1], st.contained)
    region = _layer(layer, model.params, slab)
    y, x = starts
  return _overlay(base_acts[p.stop], region, y, x, True)


@functools.partial(jax.jit, static_argnames=("window", "p"))
def occlusion_chunk(model, base_acts, fill, objective, window, p, ys, xs):
  """Scores `[C, N]` with the patch at `(ys[c], xs[c])` covered by `fill`,
  as `_occlusion._occlusion_chunk`, by incremental evaluation."""
  maps = jax.vmap(lambda y, x: occluded_map(model, p, base_acts, fill, window,
                                            y, x))(ys, xs)
  return _score_copies(model, maps, objective,
                       start=model.layers[p.stop - 1].name)


@functools.partial(jax.jit, static_argnames=("p",))
def clean_scores(model, base_acts, objective, p):
  """Scores `[N]` of the images themselves, from the base."""
  return _score_copies(model, base_acts[p.stop][None], objective,
                       start=model.layers[p.stop - 1].name)[0]
