"""Image parameterizations: what the optimizer moves, and how it becomes an
image.

A parameterization is a frozen pytree with static shape fields (hashable for
the compile cache, free to pass through `jit`) and four methods, the whole
protocol the engine uses:

* `init(key, image=None) -> params`: a random start, or the parameters of a
  given image `[N, H, W, 3]` in [0, 1];
* `to_image(params) -> images`: float32 `[N, H, W, 3]` in [0, 1];
* `constrain(params, step_ops, ascent, step) -> params`: after every update,
  runs the between-step image operations (`transforms`) where the
  parameterization can, then its own constraint;
* `check(step_ops)`: raises ValueError for step operations it cannot honour.

Params have the image on their leading axis (`[N, ...]`), so the engine can
keep the best iterate per image.

* `pixels`: the parameters are the image itself, kept in [0, 1].
* `fft`: Lucid's Fourier-space image with decorrelated colour (Olah et al.
  2017, "Feature Visualization", Distill; lucid `optvis/param/spatial.py`,
  `color.py`): a spectrum scaled by 1/frequency, an inverse real FFT, a fixed
  colour decorrelation matrix and a sigmoid to land in (0, 1).
"""

from typing import Optional

import flax
import jax
import jax.numpy as jnp
import numpy as np

from cnnviz_jax import _checks as checks

Array = jax.Array

# Square root of the ImageNet colour correlation matrix (lucid
# `optvis/param/color.py`, color_correlation_svd_sqrt), column-normalized.
_COLOR_SQRT = np.asarray([[0.26, 0.09, 0.02],
                          [0.27, 0.00, -0.05],
                          [0.27, -0.09, 0.03]], np.float32)
_COLOR_NORMALIZED = _COLOR_SQRT / np.max(np.linalg.norm(_COLOR_SQRT, axis=0))
# Lucid divides the inverse FFT by 4 to bring the initial image to a small
# range before the sigmoid.
_FFT_DIVISOR = 4.0
# `FFT.init(key, image)` inverts the sigmoid; pixels at exactly 0 or 1 would
# need infinite logits, so they are moved this far inside (below the 1/255
# step of an 8-bit image).
_LOGIT_MARGIN = 1e-4


def _static(**kw):
  return flax.struct.field(pytree_node=False, **kw)


def _check_init(image, n, hw):
  checks.check_images(image, name="init")
  if tuple(image.shape) != (n, *hw, 3):
    raise ValueError(f"init has shape {tuple(image.shape)}; the parameterization "
                     f"expects {(n, *hw, 3)}.")


@flax.struct.dataclass
class Pixels:
  """Pixel parameterization of `n` images of size `hw`, kept in [0, 1]."""
  n: int = _static()
  hw: tuple = _static()
  init_std: float = _static(default=0.01)

  def init(self, key: Array, image: Optional[Array] = None) -> Array:
    """Mid-gray plus N(0, init_std) noise, or `image` `[N, H, W, 3]` if given."""
    if image is not None:
      _check_init(image, self.n, self.hw)
      return jnp.asarray(image, jnp.float32)
    noise = self.init_std * jax.random.normal(key, (self.n, *self.hw, 3))
    return jnp.clip(0.5 + noise, 0.0, 1.0)

  def to_image(self, params: Array) -> Array:
    return params

  def constrain(self, params: Array, step_ops, ascent: Array, step) -> Array:
    """`step_ops(params, ascent, step)` (blur, clipping, projections onto a
    ball), then the projection onto [0, 1]: for an L-inf ball the two
    together are the exact projection onto the intersection."""
    if step_ops is not None:
      params = step_ops(params, ascent, step)
    return jnp.clip(params, 0.0, 1.0)

  def check(self, step_ops) -> None:
    del step_ops  # pixels honour every image operation


def _freqs(h: int, w: int) -> np.ndarray:
  fy = np.fft.fftfreq(h)[:, None]
  fx = np.fft.rfftfreq(w)[None, :]
  return np.sqrt(fx * fx + fy * fy)


@flax.struct.dataclass
class FFT:
  """Fourier parameterization with decorrelated colour (see module doc).

  Params: the spectrum float32 `[N, 3, H, W // 2 + 1, 2]` (real, imaginary).
  """
  n: int = _static()
  hw: tuple = _static()
  init_std: float = _static(default=0.01)
  decay: float = _static(default=1.0)
  decorrelate: bool = _static(default=True)

  def _scale(self) -> np.ndarray:
    h, w = self.hw
    f = _freqs(h, w)
    # 1/f^decay spectrum (natural images), floored at the lowest frequency;
    # times sqrt(h w) so the inverse FFT has unit-order values (lucid).
    return (1.0 / np.maximum(f, 1.0 / max(h, w)) ** self.decay
            * np.sqrt(h * w)).astype(np.float32)

  def _color(self) -> np.ndarray:
    return _COLOR_NORMALIZED if self.decorrelate else np.eye(3, dtype=np.float32)

  def init(self, key: Array, image: Optional[Array] = None) -> Array:
    """Small random spectrum, or the spectrum whose `to_image` is `image`
    `[N, H, W, 3]` (values within 1e-4 of 0 or 1 are moved that far in)."""
    h, w = self.hw
    if image is None:
      return self.init_std * jax.random.normal(
          key, (self.n, 3, h, w // 2 + 1, 2), jnp.float32)
    _check_init(image, self.n, self.hw)
    x = jnp.clip(jnp.asarray(image, jnp.float32), _LOGIT_MARGIN, 1.0 - _LOGIT_MARGIN)
    x = jnp.log(x) - jnp.log1p(-x)  # the sigmoid's inverse
    x = x @ jnp.asarray(np.linalg.inv(self._color().T))
    x = jnp.transpose(x * _FFT_DIVISOR, (0, 3, 1, 2))  # [N, 3, H, W]
    spec = jnp.fft.rfft2(x) / self._scale()
    return jnp.stack([spec.real, spec.imag], axis=-1).astype(jnp.float32)

  def to_image(self, params: Array) -> Array:
    h, w = self.hw
    spec = jax.lax.complex(params[..., 0], params[..., 1]) * self._scale()
    img = jnp.fft.irfft2(spec, s=(h, w))  # [N, 3, H, W]
    img = jnp.transpose(img, (0, 2, 3, 1)) / _FFT_DIVISOR
    return jax.nn.sigmoid(img @ jnp.asarray(self._color()).T)

  def constrain(self, params: Array, step_ops, ascent, step) -> Array:
    """The sigmoid keeps every spectrum's image in (0, 1): no constraint."""
    del step_ops, ascent, step  # `check` rejected any step_ops
    return params

  def check(self, step_ops) -> None:
    if step_ops is not None:
      raise ValueError("step_ops (blur, clipping, projections) act on pixels; the "
                       "fft parameterization cannot apply them. Use param.pixels "
                       "or drop them.")


def pixels(n: int, hw, init_std: float = 0.01) -> Pixels:
  """Pixel parameterization. n: images; hw: `(H, W)`; init_std: >= 0."""
  _check(n, hw, init_std)
  return Pixels(int(n), (int(hw[0]), int(hw[1])), float(init_std))


def fft(n: int, hw, init_std: float = 0.01, decay: float = 1.0,
        decorrelate: bool = True) -> FFT:
  """Fourier-space parameterization with decorrelated colour."""
  _check(n, hw, init_std)
  return FFT(int(n), (int(hw[0]), int(hw[1])), float(init_std), float(decay),
             bool(decorrelate))


def _check(n, hw, init_std):
  checks.check_positive(n, "number of images")
  if len(hw) != 2 or min(hw) < 1:
    raise ValueError(f"image size must be (H, W) with H, W >= 1; got {hw!r}.")
  checks.check_positive(init_std, "init_std", allow_zero=True)


# Parameterizations by name (the recipes' `param` entry).
PARAMETERIZATIONS = {"pixels": pixels, "fft": fft}
