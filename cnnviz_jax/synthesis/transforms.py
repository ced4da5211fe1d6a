"""Transforms of the image between parameterization and network, and
operations on the pixels between optimization steps.

Two kinds of pure callables, each a frozen pytree (its numbers are traced
leaves, so one compiled loop serves every value, and a sweep can vmap them):

* input transforms `t(key, images) -> images` (transformation robustness,
  Mordvintsev et al. 2018 / Lucid): `jitter`, `roll`, `random_scale`,
  `random_rotate`; chained by `compose`, like `optax.chain`, with the key split.
  All keep the image size.
* between-step operations `op(images, ascent, step) -> images` (Yosinski et
  al. 2015, sec. 3; projected gradient ascent), run on the pixels after each
  update, before the parameterization's own constraint (pixels: [0, 1]):
  `gaussian_blur`, `clip_small_norm`, `clip_small_contribution`,
  `project_linf`, `project_l2` (the attacks' balls); chained by
  `compose_steps`.

Images are float32 `[N, H, W, 3]`; every op keeps their shape.

Every factory registers itself by name (`REGISTRY`, `get`), big_vision
`pp/registry.py` style, so recipes and configs name components as plain data
(`get("jitter", 2)`) and a new transform is one decorated function in any
module.

Amounts that set an array size are traced too, each with a static bound:
`Jitter.pixels` pads by `max_pixels`, `GaussianBlur.radius` masks a kernel
of half-width `max_radius`. `sweep_engine.sweep` raises the bounds to the
sweep's maximum (a node's `sweep_bounds`), which leaves each point's output
unchanged up to float rounding.
"""

import math
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import numpy as np

from cnnviz_jax import _checks as checks
from cnnviz_jax.image import (  # noqa: F401 (re-exported)
    blur, default_radius, reflect_pad)

Array = jax.Array
# Name -> factory, filled at import time by `register`.
REGISTRY: dict[str, Callable[..., Any]] = {}
# Mid-gray: the zero of a mean-subtracted image (Yosinski's clipping sets
# pixels to zero there).
CENTER = 0.5


def _static(**kw):
  return flax.struct.field(pytree_node=False, **kw)


def register(name: str):
  """Decorator adding a transform or step-operation factory under `name`."""
  def wrap(factory):
    if name in REGISTRY:
      raise ValueError(f"transform {name!r} registered twice.")
    REGISTRY[name] = factory
    return factory
  return wrap


def get(name: str, *args, **kwargs):
  """Builds the registered component `name` with `args` (`get("jitter", 2)`)."""
  if name not in REGISTRY:
    raise ValueError(f"unknown transform {name!r}; registered: "
                     f"{', '.join(sorted(REGISTRY))}.")
  return REGISTRY[name](*args, **kwargs)


# ----------------------------------------------------------- input transforms


@flax.struct.dataclass
class Compose:
  """Applies `transforms` in order, each with its own key (split from `key`)."""
  transforms: tuple

  def __call__(self, key, images):
    keys = jax.random.split(key, max(len(self.transforms), 1))
    for k, t in zip(keys, self.transforms):
      images = t(k, images)
    return images


def _callables(items, what: str) -> tuple:
  for x in items:
    if not callable(x):
      raise ValueError(f"{what}; got {x!r}.")
  return tuple(items)


def compose(*transforms) -> Compose:
  """Chains input transforms (like `optax.chain`)."""
  return Compose(_callables(transforms, "compose takes callables (key, images) -> images"))


def _check_amount(value, name):
  """A non-negative integer amount (pixels), concrete or traced."""
  checks.check_positive(value, name, allow_zero=True)
  if checks.is_concrete(value):
    arr = np.asarray(value)
    if arr.dtype.kind == "f" and not np.all(arr == np.round(arr)):
      raise ValueError(f"{name} must be a whole number of pixels; got {value!r}.")
    return int(arr) if arr.ndim == 0 else jnp.asarray(arr, jnp.int32)
  return value


def _bound(value, given, name, default=None):
  """The static bound of a possibly traced amount: `given`, else the largest
  concrete value, else `default` (None: a ValueError)."""
  if given is not None:
    checks.check_positive(given, name, allow_zero=True)
    if checks.is_concrete(value) and np.max(np.asarray(value)) > given:
      raise ValueError(f"{name} {given} is below the amount {value!r}.")
    return int(given)
  if checks.is_concrete(value):
    return int(np.max(np.asarray(value)))
  if default is None:
    raise ValueError(f"a traced amount needs an explicit static {name}.")
  return default


@flax.struct.dataclass
class Jitter:
  """Random translation by up to `pixels` in each direction, reflect-padded so
  that the size is kept (Lucid `transform.jitter`).

  `pixels` is a traced leaf (sweepable); `max_pixels` (static, >= pixels) is
  the pad width. The offset is drawn in [-pixels, pixels], so the result does
  not depend on `max_pixels` (a reflect pad's inner values do not depend on
  its width).
  """
  pixels: Any
  max_pixels: int = _static(default=0)
  # `sweep` raises static bounds to their maximum over the sweep points.
  sweep_bounds = ("max_pixels",)

  def __call__(self, key, images):
    big = self.max_pixels
    if big == 0:
      return images
    n, h, w, c = images.shape
    padded = reflect_pad(images, big)
    d = jnp.asarray(self.pixels, jnp.int32)
    oy, ox = jax.random.randint(key, (2,), 0, 2 * d + 1) + (big - d)
    return jax.lax.dynamic_slice(padded, (0, oy, ox, 0), (n, h, w, c))


@register("jitter")
def jitter(pixels, max_pixels: int | None = None) -> Jitter:
  """Jitter by up to `pixels` (int >= 0, may be traced or an array).

  `max_pixels` (static) defaults to the largest concrete `pixels`; a traced
  `pixels` needs it.
  """
  pixels = _check_amount(pixels, "jitter pixels")
  return Jitter(pixels, _bound(pixels, max_pixels, "jitter max_pixels"))


@flax.struct.dataclass
class Roll:
  """Random circular shift by up to `pixels` (DeepDream's roll: the shift
  hides the tiling seams; Mordvintsev et al. 2015). `pixels` is a traced
  leaf: `jnp.roll` takes a traced shift, so no static bound is needed."""
  pixels: Any

  def __call__(self, key, images):
    p = jnp.asarray(self.pixels, jnp.int32)
    s = jax.random.randint(key, (2,), -p, p + 1)
    return jnp.roll(images, (s[0], s[1]), axis=(1, 2))


@register("roll")
def roll(pixels) -> Roll:
  """Roll by up to `pixels` (int >= 0, may be traced)."""
  return Roll(_check_amount(pixels, "roll pixels"))


def _affine(images, scale, angle):
  """Resamples `images` (bilinear, edge-clamped) by a zoom `scale` and a
  rotation `angle` (radians) about the center."""
  n, h, w, c = images.shape
  yy, xx = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32) - (h - 1) / 2,
                        jnp.arange(w, dtype=jnp.float32) - (w - 1) / 2,
                        indexing="ij")
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  sy = (cos * yy - sin * xx) / scale + (h - 1) / 2
  sx = (sin * yy + cos * xx) / scale + (w - 1) / 2

  def one(img):
    return jnp.stack([jax.scipy.ndimage.map_coordinates(
        img[..., ch], (sy, sx), order=1, mode="nearest") for ch in range(c)], -1)
  return jax.vmap(one)(images)


@flax.struct.dataclass
class RandomScale:
  """Zoom by a factor drawn uniformly from [low, high] (Lucid `random_scale`)."""
  low: Any
  high: Any

  def __call__(self, key, images):
    s = jax.random.uniform(key, (), minval=self.low, maxval=self.high)
    return _affine(images, s, 0.0)


@register("random_scale")
def random_scale(low: float = 0.95, high: float = 1.05) -> RandomScale:
  """Random zoom in [low, high] (> 0; may be traced); Lucid's standard
  transforms draw from about this range."""
  checks.check_positive(low, "random_scale low")
  if checks.is_concrete(high) and checks.is_concrete(low) and high < low:
    raise ValueError(f"random_scale needs low <= high; got {low}, {high}.")
  return RandomScale(low, high)


@flax.struct.dataclass
class RandomRotate:
  """Rotation by an angle drawn uniformly from [-degrees, degrees]."""
  degrees: Any

  def __call__(self, key, images):
    a = jax.random.uniform(key, (), minval=-1.0, maxval=1.0) * self.degrees
    return _affine(images, 1.0, a * math.pi / 180.0)


@register("random_rotate")
def random_rotate(degrees: float = 5.0) -> RandomRotate:
  """Random rotation within +-degrees (>= 0; may be traced); Lucid's
  standard transforms rotate by up to 5 degrees."""
  checks.check_positive(degrees, "random_rotate degrees", allow_zero=True)
  return RandomRotate(degrees)


# --------------------------------------------------- between-step operations

@flax.struct.dataclass
class ComposeSteps:
  """Applies between-step operations `ops` in order."""
  ops: tuple

  def __call__(self, images, ascent, step):
    for op in self.ops:
      images = op(images, ascent, step)
    return images


def compose_steps(*ops) -> ComposeSteps:
  """Chains between-step operations `(images, ascent, step) -> images`."""
  return ComposeSteps(_callables(
      ops, "compose_steps takes callables (images, ascent, step) -> images"))


@flax.struct.dataclass
class GaussianBlur:
  """Blurs every `every` steps (Yosinski et al. 2015: sigma 0.3-1, every 4).

  `sigma`, `every` and `radius` (the kernel's support, in pixels) are traced
  leaves, so a sweep can vary all three; `sigma == 0` means no blur. The
  kernel array has the static half-width `max_radius` >= radius, and taps
  beyond `radius` are zero, so a point of a sweep (where `max_radius` is the
  largest radius of the sweep) blurs exactly as the same blur alone does.
  """
  sigma: Any
  every: Any = 1
  radius: Any = 2
  max_radius: int = _static(default=2)
  # `sweep` raises static bounds to their maximum over the sweep points.
  sweep_bounds = ("max_radius",)

  def __call__(self, images, ascent, step):
    blurred = blur(images, self.sigma, self.max_radius, support=self.radius)
    on = (step % self.every == self.every - 1) & (self.sigma > 0)
    return jnp.where(on, blurred, images)


@register("gaussian_blur")
def gaussian_blur(sigma=0.5, every=4, radius=None,
                  max_radius: int | None = None) -> GaussianBlur:
  """Periodic Gaussian blur of the pixels.

  Args:
    sigma: >= 0 pixels (0: no blur); may be traced or an array.
    every: blur at steps `every - 1, 2 every - 1, ...` (>= 1; may be traced).
    radius: kernel support in pixels; default `default_radius(sigma)` =
      max(1, ceil(3 sigma)).
    max_radius: static kernel half-width (>= radius); default the largest
      concrete radius, or 3 for a traced sigma without a concrete radius.
  """
  checks.check_positive(sigma, "blur sigma", allow_zero=True)
  checks.check_positive(every, "blur every")
  if radius is None:
    radius = default_radius(sigma)
  else:
    radius = _check_amount(radius, "blur radius")
  return GaussianBlur(sigma, every, radius,
                      _bound(radius, max_radius, "blur max_radius", 3))


def _gray_below(score, percentile, images):
  """`images` with mid-gray where `score` `[N, H, W]` is below its per-image
  `percentile`."""
  flat = score.reshape(score.shape[0], -1)
  thr = jnp.percentile(flat, percentile, axis=1)
  return jnp.where((score < thr[:, None, None])[..., None], CENTER, images)


@flax.struct.dataclass
class ClipSmallNorm:
  """Sets pixels whose colour-vector norm (from mid-gray) is below the given
  per-image percentile to mid-gray (Yosinski et al. 2015, "clipping pixels
  with small norm")."""
  percentile: Any

  def __call__(self, images, ascent, step):
    return _gray_below(jnp.linalg.norm(images - CENTER, axis=-1), self.percentile,
                       images)


@flax.struct.dataclass
class ClipSmallContribution:
  """Sets pixels whose contribution |sum_c (x - mid-gray) * ascent| to the
  objective is below the per-image percentile to mid-gray (Yosinski et al.
  2015, "clipping pixels with small contribution")."""
  percentile: Any

  def __call__(self, images, ascent, step):
    return _gray_below(jnp.abs(jnp.sum((images - CENTER) * ascent, axis=-1)),
                       self.percentile, images)


@register("clip_small_norm")
def clip_small_norm(percentile: float = 10.0) -> ClipSmallNorm:
  """Small-norm clipping at `percentile` in [0, 100] (0: none)."""
  return ClipSmallNorm(_check_percentile(percentile))


@register("clip_small_contribution")
def clip_small_contribution(percentile: float = 10.0) -> ClipSmallContribution:
  """Small-contribution clipping at `percentile` in [0, 100] (0: none)."""
  return ClipSmallContribution(_check_percentile(percentile))


def _check_percentile(p):
  if checks.is_concrete(p) and not (0.0 <= np.min(p) and np.max(p) <= 100.0):
    raise ValueError(f"percentile must be in [0, 100]; got {p!r}.")
  return p


@flax.struct.dataclass
class ProjectLinf:
  """Projection onto the L-inf ball of radius `eps` around `center` `[N,H,W,3]`."""
  center: Array
  eps: Any

  def __call__(self, images, ascent, step):
    return self.center + jnp.clip(images - self.center, -self.eps, self.eps)


@flax.struct.dataclass
class ProjectL2:
  """Projection onto the per-image L2 ball of radius `eps` around `center`."""
  center: Array
  eps: Any

  def __call__(self, images, ascent, step):
    d = images - self.center
    norm = jnp.sqrt(jnp.sum(jnp.square(d), axis=(1, 2, 3), keepdims=True))
    # The floor only matters at d = 0, which stays 0.
    return self.center + d * jnp.minimum(1.0, self.eps / (norm + 1e-12))


@register("project_linf")
def project_linf(center, eps) -> ProjectLinf:
  """L-inf ball of radius `eps` >= 0 (per pixel) around `center` `[N, H, W, 3]`;
  with the pixels' [0, 1] it is the attacks' exact projection."""
  checks.check_positive(eps, "eps", allow_zero=True)
  return ProjectLinf(jnp.asarray(center), eps)


@register("project_l2")
def project_l2(center, eps) -> ProjectL2:
  """Per-image L2 ball of radius `eps` >= 0 around `center` `[N, H, W, 3]`."""
  checks.check_positive(eps, "eps", allow_zero=True)
  return ProjectL2(jnp.asarray(center), eps)


