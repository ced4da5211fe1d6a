"""Transforms of the image between parameterization and network, and
operations on the pixels between optimization steps.

Two kinds of pure callables, each a frozen pytree (its numbers are traced
leaves, so one compiled loop serves every value, and a sweep can vmap them):

* input transforms `t(key, images) -> images` (transformation robustness,
  Mordvintsev et al. 2018 / Lucid): `jitter`, `roll`, `random_scale`,
  `random_rotate`; chained by `compose`, like `optax.chain`, with the key split.
  All keep the image size.
* between-step operations `op(images, grads, step) -> images` (Yosinski et al.
  2015, sec. 3; projected gradient ascent): `gaussian_blur`, `clip_small_norm`,
  `clip_small_contribution`, `clip_range`, `project_linf`, `project_l2`;
  chained by `compose_steps`.

Images are float32 `[N, H, W, 3]`; every op keeps their shape.
"""

import math
from typing import Any

import flax
import jax
import jax.numpy as jnp

from cnnviz_jax import checks

Array = jax.Array
# Mid-gray: the zero of a mean-subtracted image (Yosinski's clipping sets
# pixels to zero there).
CENTER = 0.5


def _static(**kw):
  return flax.struct.field(pytree_node=False, **kw)


# ----------------------------------------------------------- input transforms

@flax.struct.dataclass
class Identity:
  def __call__(self, key, images):
    return images


@flax.struct.dataclass
class Compose:
  """Applies `transforms` in order, each with its own key (split from `key`)."""
  transforms: tuple

  def __call__(self, key, images):
    keys = jax.random.split(key, max(len(self.transforms), 1))
    for k, t in zip(keys, self.transforms):
      images = t(k, images)
    return images


def compose(*transforms) -> Compose:
  """Chains input transforms (like `optax.chain`)."""
  for t in transforms:
    if not callable(t):
      raise ValueError(f"compose takes callables (key, images) -> images; got {t!r}.")
  return Compose(tuple(transforms))


@flax.struct.dataclass
class Jitter:
  """Random translation by up to `pixels` in each direction, reflect-padded so
  that the size is kept (Lucid `transform.jitter`)."""
  pixels: int = _static()

  def __call__(self, key, images):
    d = self.pixels
    if d == 0:
      return images
    n, h, w, c = images.shape
    padded = jnp.pad(images, ((0, 0), (d, d), (d, d), (0, 0)), mode="reflect")
    oy, ox = jax.random.randint(key, (2,), 0, 2 * d + 1)
    return jax.lax.dynamic_slice(padded, (0, oy, ox, 0), (n, h, w, c))


def jitter(pixels: int) -> Jitter:
  checks.check_positive(pixels, "jitter pixels", allow_zero=True)
  return Jitter(int(pixels))


@flax.struct.dataclass
class Roll:
  """Random circular shift by up to `pixels` (DeepDream's roll: the shift
  hides the tiling seams; Mordvintsev et al. 2015)."""
  pixels: int = _static()

  def __call__(self, key, images):
    if self.pixels == 0:
      return images
    s = jax.random.randint(key, (2,), -self.pixels, self.pixels + 1)
    return jnp.roll(images, (s[0], s[1]), axis=(1, 2))


def roll(pixels: int) -> Roll:
  checks.check_positive(pixels, "roll pixels", allow_zero=True)
  return Roll(int(pixels))


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


def random_scale(low: float = 0.95, high: float = 1.05) -> RandomScale:
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


def random_rotate(degrees: float = 5.0) -> RandomRotate:
  checks.check_positive(degrees, "random_rotate degrees", allow_zero=True)
  return RandomRotate(degrees)


# --------------------------------------------------- between-step operations

@flax.struct.dataclass
class ComposeSteps:
  ops: tuple

  def __call__(self, images, grads, step):
    for op in self.ops:
      images = op(images, grads, step)
    return images


def compose_steps(*ops) -> ComposeSteps:
  """Chains between-step operations `(images, grads, step) -> images`."""
  for op in ops:
    if not callable(op):
      raise ValueError(f"compose_steps takes callables; got {op!r}.")
  return ComposeSteps(tuple(ops))


def blur(images: Array, sigma, radius: int) -> Array:
  """Separable Gaussian blur (reflect padding); `sigma` may be traced."""
  t = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  k = jnp.exp(-0.5 * jnp.square(t / jnp.maximum(sigma, 1e-3)))
  k = k / k.sum()
  c = images.shape[-1]
  x = jnp.pad(images, ((0, 0), (radius, radius), (radius, radius), (0, 0)),
              mode="reflect")
  dn = ("NHWC", "HWIO", "NHWC")
  ky = jnp.tile(k.reshape(-1, 1, 1, 1), (1, 1, 1, c))
  kx = jnp.tile(k.reshape(1, -1, 1, 1), (1, 1, 1, c))
  x = jax.lax.conv_general_dilated(x, ky, (1, 1), "VALID", dimension_numbers=dn,
                                   feature_group_count=c)
  return jax.lax.conv_general_dilated(x, kx, (1, 1), "VALID", dimension_numbers=dn,
                                      feature_group_count=c)


@flax.struct.dataclass
class GaussianBlur:
  """Blurs every `every` steps (Yosinski et al. 2015: sigma 0.3-1, every 4)."""
  sigma: Any
  every: int = _static(default=1)
  radius: int = _static(default=2)

  def __call__(self, images, grads, step):
    blurred = blur(images, self.sigma, self.radius)
    return jnp.where(step % self.every == self.every - 1, blurred, images)


def gaussian_blur(sigma: float = 0.5, every: int = 4,
                  radius: int | None = None) -> GaussianBlur:
  """`radius` (static) defaults to ceil(3 sigma) for a concrete sigma."""
  checks.check_positive(sigma, "blur sigma")
  checks.check_positive(every, "blur every")
  if radius is None:
    radius = max(1, math.ceil(3 * float(sigma))) if checks.is_concrete(sigma) else 3
  return GaussianBlur(sigma, int(every), int(radius))


def _percentile_mask(score, percentile):
  """True where `score` `[N, H, W]` is below its per-image `percentile`."""
  flat = score.reshape(score.shape[0], -1)
  thr = jnp.percentile(flat, percentile, axis=1)
  return score < thr[:, None, None]


@flax.struct.dataclass
class ClipSmallNorm:
  """Sets pixels whose colour-vector norm (from mid-gray) is below the given
  per-image percentile to mid-gray (Yosinski et al. 2015, "clipping pixels
  with small norm")."""
  percentile: Any

  def __call__(self, images, grads, step):
    norm = jnp.linalg.norm(images - CENTER, axis=-1)
    return jnp.where(_percentile_mask(norm, self.percentile)[..., None],
                     CENTER, images)


def clip_small_norm(percentile: float = 10.0) -> ClipSmallNorm:
  _check_percentile(percentile)
  return ClipSmallNorm(percentile)


@flax.struct.dataclass
class ClipSmallContribution:
  """Sets pixels whose contribution |sum_c (x - mid-gray) * grad| to the
  objective is below the per-image percentile to mid-gray (Yosinski et al.
  2015, "clipping pixels with small contribution")."""
  percentile: Any

  def __call__(self, images, grads, step):
    contrib = jnp.abs(jnp.sum((images - CENTER) * grads, axis=-1))
    return jnp.where(_percentile_mask(contrib, self.percentile)[..., None],
                     CENTER, images)


def clip_small_contribution(percentile: float = 10.0) -> ClipSmallContribution:
  _check_percentile(percentile)
  return ClipSmallContribution(percentile)


def _check_percentile(p):
  import numpy as np
  if checks.is_concrete(p) and not (0.0 <= np.min(p) and np.max(p) <= 100.0):
    raise ValueError(f"percentile must be in [0, 100]; got {p!r}.")


@flax.struct.dataclass
class ClipRange:
  lo: Any = 0.0
  hi: Any = 1.0

  def __call__(self, images, grads, step):
    return jnp.clip(images, self.lo, self.hi)


def clip_range(lo: float = 0.0, hi: float = 1.0) -> ClipRange:
  """Projection onto the valid pixel range (projected gradient ascent)."""
  return ClipRange(lo, hi)


@flax.struct.dataclass
class ProjectLinf:
  """Projection onto the L-inf ball of radius `eps` around `center` `[N,H,W,3]`."""
  center: Array
  eps: Any

  def __call__(self, images, grads, step):
    return self.center + jnp.clip(images - self.center, -self.eps, self.eps)


@flax.struct.dataclass
class ProjectL2:
  """Projection onto the per-image L2 ball of radius `eps` around `center`."""
  center: Array
  eps: Any

  def __call__(self, images, grads, step):
    d = images - self.center
    norm = jnp.sqrt(jnp.sum(jnp.square(d), axis=(1, 2, 3), keepdims=True))
    return self.center + d * jnp.minimum(1.0, self.eps / (norm + 1e-12))


def project_linf(center, eps) -> ProjectLinf:
  checks.check_positive(eps, "eps", allow_zero=True)
  return ProjectLinf(jnp.asarray(center), eps)


def project_l2(center, eps) -> ProjectL2:
  checks.check_positive(eps, "eps", allow_zero=True)
  return ProjectL2(jnp.asarray(center), eps)


TRANSFORMS = {"jitter": jitter, "roll": roll, "random_scale": random_scale,
              "random_rotate": random_rotate}
STEP_OPS = {"gaussian_blur": gaussian_blur, "clip_small_norm": clip_small_norm,
            "clip_small_contribution": clip_small_contribution,
            "clip_range": clip_range}
