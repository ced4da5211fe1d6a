"""Image parameterizations: `init(key) -> params`, `to_image(params) -> images`.

* `pixels`: the parameters are the image itself, float32 `[N, H, W, 3]` in
  [0, 1] (kept there by the engine's projection after each step).
* `fft`: Lucid's Fourier-space image with decorrelated colour (Olah et al.
  2017, "Feature Visualization", Distill; lucid `optvis/param/spatial.py`,
  `color.py`): a spectrum scaled by 1/frequency, an inverse real FFT, a fixed
  colour decorrelation matrix and a sigmoid to land in (0, 1).

A parameterization is a frozen pytree with static shape fields, so it is
hashable for the compile cache and costs nothing to pass through `jit`.
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


def _static(**kw):
  return flax.struct.field(pytree_node=False, **kw)


@flax.struct.dataclass
class Pixels:
  """Pixel parameterization of `n` images of size `hw`."""
  n: int = _static()
  hw: tuple = _static()
  init_std: float = _static(default=0.01)
  kind: str = _static(default="pixels")

  def init(self, key: Array, image: Optional[Array] = None) -> Array:
    """Mid-gray plus N(0, init_std) noise, or `image` `[N, H, W, 3]` if given."""
    if image is not None:
      return jnp.broadcast_to(jnp.asarray(image, jnp.float32),
                              (self.n, *self.hw, 3))
    noise = self.init_std * jax.random.normal(key, (self.n, *self.hw, 3))
    return jnp.clip(0.5 + noise, 0.0, 1.0)

  def to_image(self, params: Array) -> Array:
    return params


def _freqs(h: int, w: int) -> np.ndarray:
  fy = np.fft.fftfreq(h)[:, None]
  fx = np.fft.rfftfreq(w)[None, :]
  return np.sqrt(fx * fx + fy * fy)


@flax.struct.dataclass
class FFT:
  """Fourier parameterization with decorrelated colour (see module doc)."""
  n: int = _static()
  hw: tuple = _static()
  init_std: float = _static(default=0.01)
  decay: float = _static(default=1.0)
  decorrelate: bool = _static(default=True)
  kind: str = _static(default="fft")

  def _scale(self) -> np.ndarray:
    h, w = self.hw
    f = _freqs(h, w)
    # 1/f^decay spectrum (natural images), floored at the lowest frequency;
    # times sqrt(h w) so the inverse FFT has unit-order values (lucid).
    return (1.0 / np.maximum(f, 1.0 / max(h, w)) ** self.decay
            * np.sqrt(h * w)).astype(np.float32)

  def init(self, key: Array, image: Optional[Array] = None) -> Array:
    """Spectrum `[N, 3, H, W//2+1, 2]` (real, imaginary). `image` unsupported."""
    if image is not None:
      raise ValueError("the fft parameterization starts from noise; use "
                       "param.pixels to start from an image.")
    h, w = self.hw
    return self.init_std * jax.random.normal(
        key, (self.n, 3, h, w // 2 + 1, 2), jnp.float32)

  def to_image(self, params: Array) -> Array:
    h, w = self.hw
    spec = jax.lax.complex(params[..., 0], params[..., 1]) * self._scale()
    img = jnp.fft.irfft2(spec, s=(h, w))  # [N, 3, H, W]
    # lucid divides by 4 to bring the initial image to a small range.
    img = jnp.transpose(img, (0, 2, 3, 1)) / 4.0
    if self.decorrelate:
      img = img @ jnp.asarray(_COLOR_NORMALIZED).T
    return jax.nn.sigmoid(img)


def pixels(n: int, hw, init_std: float = 0.01) -> Pixels:
  """Pixel parameterization. n: images; hw: `(H, W)`."""
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


PARAMETERIZATIONS = {"pixels": pixels, "fft": fft}
