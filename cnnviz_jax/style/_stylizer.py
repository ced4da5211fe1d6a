"""Feed-forward style transfer: Johnson et al.'s (2016) image transformation
network with instance normalization (Ulyanov et al. 2016), conditional over
several styles (Dumoulin et al. 2017), so one forward pass stylizes.

    stylizer, params = style.load_stylizer()          # the shipped network
    out = style.stylize(stylizer, params, images, style=2)
    mix = style.stylize(stylizer, params, images, style=[0.5, 0, 0, 0.5])

Layout (Johnson et al. 2016, supplementary Table 1, narrower): a 9x9 conv,
two stride-2 3x3 convs, residual blocks, two upsampling stages, a 9x9 conv
to RGB. Two choices follow what users of every fast-style implementation
report: reflection padding (zero padding leaves dark borders) and upsampling
by nearest-neighbour resize then a 3x3 conv (Odena et al. 2016, "Deconvolution
and checkerboard artifacts"; transposed convs leave a checkerboard). Each
upsampling stage resizes to the exact size its encoder stage had, so any
H and W, odd ones too, come back at their own size.

Every normalization is conditional instance norm: per image and channel,
zero mean and unit variance over the positions, then `gamma . x + beta`
with `gamma = w @ scale`, `beta = w @ bias` over the style weights `w`
(`scale`, `bias` `[num_styles, C]`). A one-hot `w` is that style's own
network; a convex `w` blends styles as Dumoulin et al. section 4 do. With
`num_styles=1` it is plain instance norm.
"""

import functools
import json
import os
from typing import Callable, Optional, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cnnviz_jax import _checks as checks
from cnnviz_jax import image as image_lib
from cnnviz_jax.models import checkpoint, core
from cnnviz_jax.models import conv as conv_lib

Array = jax.Array

# Ulyanov et al. 2016 and torch's InstanceNorm2d: keeps 1/sqrt(var + eps)
# finite on a constant channel (a flat image region at a deep stage).
IN_EPS = 1e-5
# Style weights must sum to 1 within float32 rounding of a few terms
# (e.g. [1/3, 1/3, 1/3] typed as decimals).
SUM_TOLERANCE = 1e-4
SHIPPED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights",
                       "stylizer.safetensors")
# The output layer's init: variance 1/fan_in keeps the pre-sigmoid output
# near unit scale (the default fan-out Kaiming init on a 9x9 3-channel
# output gave a std of about 2, a saturated sigmoid at the start).
_OUT_INIT = nn.initializers.variance_scaling(1.0, "fan_in", "normal")


def instance_norm(x: Array, eps: float = IN_EPS) -> Array:
  """Per image and channel: zero mean, unit variance over the positions.

  Args:
    x: float `[N, H, W, C]`.
    eps: added to the variance.

  Returns:
    float `[N, H, W, C]`, the normalized maps (no affine part).
  """
  mean, var = mean_var(x)
  return (x - mean) * jax.lax.rsqrt(var + eps)


def mean_var(x: Array) -> tuple[Array, Array]:
  """Per image and channel mean and variance over the positions of `x`
  `[N, H, W, C]`, each `[N, 1, 1, C]`: two passes (mean, then the centred
  squares), exact for maps with a large offset."""
  mean = _position_mean(x)
  return mean, _position_mean(jnp.square(x - mean))


def _position_mean(x: Array) -> Array:
  """`x.mean(axis=(1, 2), keepdims=True)`, read as rows of `r >= 2`
  positions and at least 128 floats (`[N, H*W/r, r*C]`, summed, then the
  `r` groups): XLA:CPU sums a long axis with only C floats kept per row
  slowly. Measured on the 2-core EPYC (jax 0.10.2), instance norm + affine +
  ReLU, ms: 1x256x256x16 1.72 -> 0.83, 1x512x512x16 5.43 -> 2.06, 1x64x64x64
  0.39 -> 0.22, 4x256x256x16 5.60 -> 3.74; a plain channel sum of
  128x16x16x128 2.72 -> 0.24 with r = 2 (r = 1 no faster). Two passes
  (mean, then the centred squares) keep the variance exact for maps with a
  large offset; one shifted pass was slower in the network (81 vs 73 ms at
  512x512)."""
  n, h, w, c = x.shape
  r = max(2, 128 // c)
  while (h * w) % r:
    r //= 2
  s = x.reshape(n, h * w // r, r * c).sum(axis=1).reshape(n, r, c).sum(axis=1)
  return (s / (h * w)).reshape(n, 1, 1, c)


class CondInstanceNorm(nn.Module):
  """Conditional instance norm (Dumoulin et al. 2017, eq. 5): the style
  weights `w` `[N, S]` mix the per-style affine parameters."""
  num_styles: int

  @nn.compact
  def __call__(self, x: Array, w: Array) -> Array:
    c = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones, (self.num_styles, c))
    bias = self.param("bias", nn.initializers.zeros, (self.num_styles, c))
    gamma, beta = w @ scale, w @ bias  # [N, C]
    return instance_norm(x) * gamma[:, None, None] + beta[:, None, None]




def _phase_taps(k: Array) -> Array:
  """3 taps `k [3, ...]` (axis 0) read on a nearest-2x-upsampled,
  reflection-padded map, as taps on the edge-padded original: output phase 0
  (even rows) sees original rows i-1, i, i+1 with `[k0, k1 + k2, 0]`, phase
  1 (odd rows) with `[0, k0 + k1, k2]`. Returns `[2 (phase), 3, ...]`."""
  z = jnp.zeros_like(k[0])
  return jnp.stack([jnp.stack([k[0], k[1] + k[2], z]),
                    jnp.stack([z, k[0] + k[1], k[2]])])


def _upsample2_conv(x: Array, kernel: Array) -> Array:
  """`conv(reflect_pad(nearest_resize_2x(x), 1), kernel)` for a 3x3 kernel,
  without the upsampled map. Output phase `(a, b)` (rows `2i + a`, columns
  `2j + b`) is a 2x2 convolution of the edge-padded `x` with summed taps
  (`_phase_taps`) read at offset `(a, b)`; one 2x2 convolution to all four
  phases' channels at every offset computes them together, 4/9 of the
  multiply-adds, and one interleaving pass picks each phase at its own
  offset. The same values up to float rounding.

  Measured on the 2-core EPYC (jax 0.10.2, the library's Eigen convolutions,
  `cnnviz_jax/_xla_cpu.py`), ms, forward / with both gradients, against the
  former one 3x3 convolution to the four phases (itself 1.7-2.4x faster than
  resize + pad + conv): batch 1 128x128 64->32 6.34 -> 3.25 / 15.0 -> 8.5,
  256x256 32->16 7.78 -> 5.24 / 31.0 -> 24.1; batch 4 64x64 32->16 1.57 ->
  1.01 / 4.40 -> 2.48, 20x20 16->8 0.14 -> 0.11 / 0.31 -> 0.23.
  """
  n, h, w, c = x.shape
  o = kernel.shape[-1]
  e = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
  rows = _phase_taps(kernel)                       # [a, i, j, c, o]
  taps = _phase_taps(jnp.moveaxis(rows, 2, 0))     # [b, j, a, i, c, o]
  # k[u, v, :, a, b] = phase (a, b)'s tap (a + u, b + v) of the 3x3 window.
  k = jnp.stack([jnp.stack([taps[b, b:b + 2, a, a:a + 2].transpose(1, 0, 2, 3)
                            for b in range(2)], axis=-2)
                 for a in range(2)], axis=-3)      # [u, v, c, a, b, o]
  y = conv_lib.conv2d(e, k.reshape(2, 2, c, 4 * o))
  y = y.reshape(n, h + 1, w + 1, 2, 2, o)
  phases = [jnp.stack([y[:, a:a + h, b:b + w, a, b] for b in range(2)], axis=3)
            for a in range(2)]                     # [n, h, w, b, o] each
  return jnp.stack(phases, axis=2).reshape(n, 2 * h, 2 * w, o)


class ReflectConv(nn.Module):
  """Reflection pad and conv (stride `stride`), or with `upsample_to` (3x3
  only) a nearest resize to that size first (an exact 2x takes
  `_upsample2_conv`). Parameters as `Conv`'s (`kernel`, `bias`). With
  `add_bias=False` (a conv in front of an instance norm) the bias is kept
  for the checkpoint format but not added: the norm removes every
  per-channel constant, so it would change nothing but cost a pass over each
  map (6 of the 85 ms of a 512x512 stylization, measured); it gets a zero
  gradient."""
  features: int
  kernel: int
  stride: int = 1
  upsample_to: Optional[tuple[int, int]] = None
  add_bias: bool = True
  kernel_init: Callable = conv_lib.default_kernel_init

  @nn.compact
  def __call__(self, x: Array) -> Array:
    k = self.kernel
    kernel = self.param("kernel", self.kernel_init,
                        (k, k, x.shape[-1], self.features))
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    if self.upsample_to is None:
      y = conv_lib.conv2d(image_lib.reflect_pad(x, k // 2), kernel,
                          stride=self.stride)
    elif tuple(self.upsample_to) == (2 * x.shape[1], 2 * x.shape[2]):
      y = _upsample2_conv(x, kernel)
    else:
      up = image_lib.resize(x, self.upsample_to, "nearest")
      y = conv_lib.conv2d(image_lib.reflect_pad(up, 1), kernel)
    return y + bias if self.add_bias else y


class ConvNorm(nn.Module):
  """Reflection pad, conv (stride `stride`), conditional IN, optional ReLU.
  With `upsample_to` (3x3 only): a nearest resize to that size first."""
  features: int
  kernel: int
  num_styles: int
  stride: int = 1
  relu: bool = True
  upsample_to: Optional[tuple[int, int]] = None

  @nn.compact
  def __call__(self, x: Array, w: Array) -> Array:
    x = ReflectConv(self.features, self.kernel, self.stride, self.upsample_to,
                    add_bias=False, name="conv")(x)
    x = CondInstanceNorm(self.num_styles, name="norm")(x, w)
    return nn.relu(x) if self.relu else x


class Residual(nn.Module):
  """Johnson et al.'s residual block: conv-IN-ReLU-conv-IN plus the input."""
  features: int
  num_styles: int

  @nn.compact
  def __call__(self, x: Array, w: Array) -> Array:
    h = ConvNorm(self.features, 3, self.num_styles, name="a")(x, w)
    return x + ConvNorm(self.features, 3, self.num_styles, relu=False, name="b")(h, w)


class Stylizer(nn.Module):
  """Johnson et al.'s image transformation network with conditional IN.

  Attributes:
    num_styles: styles the norm layers condition on (1: plain IN).
    channels: widths of the three encoder stages (Johnson: 32, 64, 128).
    num_residual: residual blocks at the lowest resolution (Johnson: 5).
    noise_channels: uniform noise maps concatenated to the input (Ulyanov
      et al. 2016's texture networks), a random source of texture for flat
      regions (0: none, Johnson's network). It did not cure the shipped
      recipe's hatching (README, "The noise input, tried").

  Call `stylizer.apply(params, images, weights, noise)`: `images` float32
  `[N, H, W, 3]` in [0, 1], any `H, W >= 2`; `weights` float32 `[N, S]`
  style weights (rows one-hot or convex); `noise` float32 `[N or 1, H, W,
  noise_channels]` in [0, 1] (only with `noise_channels`). Returns
  `[N, H, W, 3]` in (0, 1). Use `stylize` for checked arguments, style
  indices and the noise.
  """
  num_styles: int = 1
  channels: tuple = (16, 32, 64)
  num_residual: int = 3
  noise_channels: int = 0

  @nn.compact
  def __call__(self, images: Array, weights: Array,
               noise: Optional[Array] = None) -> Array:
    s, (c1, c2, c3) = self.num_styles, self.channels
    x = images * 2.0 - 1.0  # centred; the first IN removes the offset anyway
    if self.noise_channels:
      want = (*x.shape[1:3], self.noise_channels)
      if noise is None or tuple(noise.shape[1:]) != want:
        raise ValueError(f"this stylizer takes noise [N or 1, {want[0]}, "
                         f"{want[1]}, {want[2]}] in [0, 1] (`stylize` makes "
                         f"it from a key); got "
                         f"{None if noise is None else tuple(noise.shape)}.")
      noise = jnp.broadcast_to(noise, (x.shape[0], *want))
      x = jnp.concatenate([x, noise * 2.0 - 1.0], axis=-1)
    x = ConvNorm(c1, 9, s, name="enc1")(x, weights)
    h1 = x.shape[1:3]
    x = ConvNorm(c2, 3, s, stride=2, name="enc2")(x, weights)
    h2 = x.shape[1:3]
    x = ConvNorm(c3, 3, s, stride=2, name="enc3")(x, weights)
    for i in range(self.num_residual):
      x = Residual(c3, s, name=f"res{i + 1}")(x, weights)
    # Back to each encoder stage's own size (not 2x): odd sizes round-trip.
    x = ConvNorm(c2, 3, s, upsample_to=h2, name="dec1")(x, weights)
    x = ConvNorm(c1, 3, s, upsample_to=h1, name="dec2")(x, weights)
    x = ReflectConv(3, 9, kernel_init=_OUT_INIT, name="out")(x)
    # A sigmoid keeps the output in (0, 1) with gradients everywhere
    # (Johnson et al. scale a tanh to the pixel range, the same up to scale).
    return jax.nn.sigmoid(x)

  def init_params(self, key: Array, hw: tuple[int, int] = (32, 32)):
    """Random parameters (the `params` collection), from `key`."""
    return _init_params(self, key, tuple(hw))


@functools.partial(jax.jit, static_argnums=(0, 2))
def _init_params(stylizer, key, hw):
  # Jitted once per architecture and size: eager, Flax ran every layer's
  # ops one by one (the AdaIN launcher's smoke run 13.1 -> 9.5 s jitted).
  x = jnp.zeros((1, *hw, 3), jnp.float32)
  w = jnp.ones((1, stylizer.num_styles), jnp.float32) / stylizer.num_styles
  return stylizer.init(key, x, w, noise_like(stylizer, x))["params"]


def noise_like(stylizer: Stylizer, images: Array,
               key: Optional[Array] = None) -> Optional[Array]:
  """The noise input for `images` `[N, H, W, 3]`: uniform `[1, H, W,
  noise_channels]` from `key` (None: `PRNGKey(0)`, so a call is
  reproducible), shared by every image of the batch (a batch stylizes as
  its images one by one do); None for a network without noise."""
  if not stylizer.noise_channels:
    return None
  key = jax.random.PRNGKey(0) if key is None else key
  return jax.random.uniform(key, (1, *images.shape[1:3], stylizer.noise_channels))


def style_weights(style, num_styles: int, n: int) -> Array:
  """The `[n, num_styles]` style weights `stylize` uses.

  Args:
    style: an index in `[0, num_styles)`, a vector `[num_styles]` of weights
      >= 0 summing to 1 (one blend for every image), or `[n, num_styles]`.
    num_styles: the network's styles.
    n: images in the batch.

  Raises:
    ValueError: an index out of range or not an integer, a vector of the
      wrong length, negative or non-finite weights, or weights whose sum is
      not 1.
  """
  if isinstance(style, (int, np.integer)) and not isinstance(style, bool):
    if not 0 <= int(style) < num_styles:
      raise ValueError(f"style index {int(style)} out of range; this network "
                       f"has {num_styles} styles (valid: 0..{num_styles - 1}).")
    return jnp.broadcast_to(jax.nn.one_hot(int(style), num_styles), (n, num_styles))
  if isinstance(style, (bool, float, str)) or style is None:
    raise ValueError(f"style must be an integer index in 0..{num_styles - 1} "
                     f"or a weight vector of length {num_styles}; got {style!r}.")
  w = style if not checks.is_concrete(style) else np.asarray(style, np.float32)
  if w.ndim not in (1, 2) or w.shape[-1] != num_styles or (
      w.ndim == 2 and w.shape[0] != n):
    raise ValueError(f"style weights must have shape [{num_styles}] or "
                     f"[{n}, {num_styles}] (images, styles); got {tuple(w.shape)}.")
  if checks.is_concrete(w):
    if not np.all(np.isfinite(w)) or np.any(w < 0):
      raise ValueError(f"style weights must be finite and >= 0; got {w.tolist()}.")
    sums = w.sum(axis=-1)
    if np.any(np.abs(sums - 1.0) > SUM_TOLERANCE):
      raise ValueError(f"style weights must sum to 1 (a blend of the styles); "
                       f"got sum {sums.tolist()} for {w.tolist()}.")
  return jnp.broadcast_to(jnp.asarray(w, jnp.float32), (n, num_styles))


@functools.partial(jax.jit, static_argnums=0)
def _forward(stylizer, params, images, weights, key):
  return stylizer.apply({"params": params}, images, weights,
                        noise_like(stylizer, images, key))


def stylize(stylizer: Stylizer, params, images: Array, *,
            style: Union[int, Sequence[float], Array] = 0,
            key: Optional[Array] = None) -> Array:
  """Stylizes images in one forward pass.

  Args:
    stylizer: a `Stylizer`.
    params: its parameters (`load_stylizer` or training).
    images: float32 `[N, H, W, 3]` RGB in [0, 1] (or one `[H, W, 3]`), any
      `H, W >= 2`, odd sizes too.
    style: a style index, or weights `[S]` (>= 0, summing to 1) blending the
      styles' normalization parameters (Dumoulin et al. 2017), or `[N, S]`.
    key: PRNG key of the noise input of a network with `noise_channels`
      (None: `PRNGKey(0)`, the same picture every call; another key paints
      other strokes). Ignored by a network without noise.

  Returns:
    float32 `[N, H, W, 3]` in [0, 1] (`[H, W, 3]` for one image): the same
    size as `images`.

  Raises:
    ValueError: images of another rank, channel count or range, smaller than
      2x2, or bad style weights (see `style_weights`).
  """
  x = jnp.asarray(images, jnp.float32)
  single = x.ndim == 3
  if single:
    x = x[None]
  if x.ndim != 4 or x.shape[-1] != 3:
    raise ValueError("images must be [N, H, W, 3] (or [H, W, 3]) RGB; got shape "
                     f"{tuple(np.shape(images))}.")
  if min(x.shape[1:3]) < 2:
    raise ValueError(f"images must be at least 2x2 (reflection padding); got "
                     f"{x.shape[1]}x{x.shape[2]}.")
  if checks.is_concrete(x) and x.size:
    lo, hi = float(x.min()), float(x.max())
    if not (np.isfinite(lo) and np.isfinite(hi) and lo >= 0.0 and hi <= 1.0):
      hint = (f" (dtype {np.asarray(images).dtype}: convert with "
              "images.astype(np.float32) / 255)"
              if np.issubdtype(np.asarray(images).dtype, np.integer) else "")
      raise ValueError(f"images must hold values in [0, 1]; got range "
                       f"[{lo:.4g}, {hi:.4g}]{hint}.")
  w = style_weights(style, stylizer.num_styles, x.shape[0])
  out = _forward(stylizer, params, x, w, key)
  return out[0] if single else out


def expected_shapes(stylizer: Stylizer) -> dict:
  """`{"/"-joined key: shape}` of `stylizer`'s parameters."""
  shapes = jax.eval_shape(lambda k: stylizer.init_params(k), jax.random.PRNGKey(0))
  return {k: tuple(v.shape) for k, v in core.flatten(shapes).items()}


def architecture(stylizer: Stylizer) -> dict:
  """The fields that rebuild `stylizer` (stored in checkpoints)."""
  return {"num_styles": stylizer.num_styles, "channels": list(stylizer.channels),
          "num_residual": stylizer.num_residual,
          "noise_channels": stylizer.noise_channels}


def save_stylizer(path: str, stylizer: Stylizer, params, *,
                  style_names: Sequence[str], recipe: Optional[dict] = None) -> None:
  """Writes `params` to `path` (safetensors, atomically) with the
  architecture, the style names and the training recipe as metadata."""
  if len(style_names) != stylizer.num_styles:
    raise ValueError(f"{len(style_names)} style names for a network of "
                     f"{stylizer.num_styles} styles.")
  checkpoint.save(path, params, {
      "format": "cnnviz_jax.stylizer/1",
      "architecture": architecture(stylizer),
      "style_names": list(style_names),
      "recipe": recipe or {}})


def load_stylizer(path: Optional[str] = None):
  """A saved stylizer: `(stylizer, params)`.

  Args:
    path: a file written by `save_stylizer` (training); None: the network
      shipped with the package (four styles, see `weights/MODEL_CARD.md`).

  Returns:
    `(Stylizer, params)`; `read_metadata(path)` gives the style names and the
    recipe (`stylizer_info`).

  Raises:
    FileNotFoundError: no such file.
    ValueError: not a stylizer file, or its tensors do not match the
      architecture it names (missing, unexpected, mis-shaped keys listed).
  """
  path = SHIPPED if path is None else os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"stylizer weights not found: {path}")
  meta = stylizer_info(path)
  arch = meta["architecture"]
  stylizer = Stylizer(num_styles=int(arch["num_styles"]),
                      channels=tuple(int(c) for c in arch["channels"]),
                      num_residual=int(arch["num_residual"]),
                      noise_channels=int(arch.get("noise_channels", 0)))
  params, _ = checkpoint.load(path, expected_shapes(stylizer))
  return stylizer, jax.tree_util.tree_map(jnp.asarray, params)


def stylizer_info(path: Optional[str] = None) -> dict:
  """The metadata of a stylizer file: `{"architecture", "style_names",
  "recipe"}` (parsed JSON). None: the shipped network."""
  path = SHIPPED if path is None else os.fspath(path)
  meta = checkpoint.read_metadata(path)
  if meta.get("format") != "cnnviz_jax.stylizer/1" or "architecture" not in meta:
    raise ValueError(f"{path} is not a stylizer file (no 'format: "
                     "cnnviz_jax.stylizer/1' metadata); write it with "
                     "style.save_stylizer.")
  return {k: json.loads(meta[k]) for k in ("architecture", "style_names", "recipe")}
