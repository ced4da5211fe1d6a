"""A deep generator prior (Nguyen et al. 2016b, "Synthesizing the preferred
inputs for neurons in neural networks via deep generator networks"): a network
`G` trained to invert a classifier's fully connected features (Dosovitskiy &
Brox 2016, "Generating images with perceptual similarity metrics based on deep
networks"), so that class visualization can optimize the code `h` of `G(h)`
instead of pixels. The images stay on the manifold `G` learnt from real
photographs, which makes them look more natural than any pixel prior.

    prior = synthesis.load_generator()                # shipped, offline
    images = synthesis.generate(prior, codes)         # [N, 32, 32, 3] in [0, 1]
    images = synthesis.visualize_class(model, range(10), key=key,
                                       recipe_name="generator")

The shipped weights invert `fc6` (256-d) of the shipped `cifar_vgg`
(`experiments/train_generator.py`; model card in the README). `GeneratorPrior`
carries the per-dimension code range observed on the training images, to
which the `generator` parameterization (`param.PARAMETERIZATIONS["generator"]`,
registered here) clips the code after every step, as the paper clips its
`fc6` code.
"""

import functools
import json
import os
from typing import Any, NamedTuple, Optional, Sequence

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from safetensors import safe_open

from cnnviz_jax import _checks as checks
from cnnviz_jax.image import resize
from cnnviz_jax.models import checkpoint, core
from cnnviz_jax.synthesis import param as param_lib

Array = jax.Array

SHIPPED_GENERATOR = os.path.join(os.path.dirname(__file__), "weights",
                                 "generator.safetensors")
# Dosovitskiy & Brox (2016) use leaky ReLUs with slope 0.3 throughout.
LEAKY_SLOPE = 0.3
# Channels at each resolution, coarsest first: the image is built at
# size / 2**(len - 1) and doubled len - 1 times. (256, 128, 64, 32) at 32x32
# keeps the generator at 1.5M parameters (6 MB float32, under the 10 MB the
# package may ship) and one step of a batch of 64 cheap on a 2-core CPU.
DEFAULT_WIDTHS = (256, 128, 64, 32)
# The discriminator's channels (stride-2 convolutions): small, as it only has
# to push the generator away from blur (Dosovitskiy & Brox 2016, Sec. 3).
DEFAULT_DISC_WIDTHS = (32, 64, 128)


class Generator(nn.Module):
  """Code -> image: two dense layers, then (nearest 2x upsampling, 3x3 conv)
  per doubling, which avoids the checkerboard of strided transposed
  convolutions; a sigmoid keeps pixels in [0, 1].

  Attributes:
    image_size: output height and width; divisible by 2**(len(widths) - 1).
    widths: channels at each resolution, coarsest first.
  """
  image_size: int = 32
  widths: Sequence[int] = DEFAULT_WIDTHS

  @nn.compact
  def __call__(self, code: Array) -> Array:
    """code: float32 `[N, D]` -> images float32 `[N, S, S, 3]` in [0, 1]."""
    act = lambda x: nn.leaky_relu(x, LEAKY_SLOPE)
    s = self.image_size // 2 ** (len(self.widths) - 1)
    x = act(nn.Dense(self.widths[0], name="fc1")(code))
    x = act(nn.Dense(s * s * self.widths[0], name="fc2")(x))
    x = x.reshape(x.shape[0], s, s, self.widths[0])
    for i, w in enumerate(self.widths[1:]):
      x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
      x = act(nn.Conv(w, (3, 3), padding="SAME", name=f"conv{i + 1}")(x))
    x = nn.Conv(3, (3, 3), padding="SAME", name="to_rgb")(x)
    return nn.sigmoid(x)


class Discriminator(nn.Module):
  """Image -> real/fake logit: stride-2 3x3 convolutions, one dense layer.

  Attributes:
    widths: channels of the convolutions.
  """
  widths: Sequence[int] = DEFAULT_DISC_WIDTHS

  @nn.compact
  def __call__(self, images: Array) -> Array:
    """images: float32 `[N, H, W, 3]` in [0, 1] -> logits float32 `[N]`."""
    x = images * 2.0 - 1.0
    for i, w in enumerate(self.widths):
      x = nn.leaky_relu(nn.Conv(w, (3, 3), strides=(2, 2), padding="SAME",
                                name=f"conv{i + 1}")(x), LEAKY_SLOPE)
    return nn.Dense(1, name="fc")(x.reshape(x.shape[0], -1))[:, 0]


class GeneratorPrior(NamedTuple):
  """A trained generator and what it inverts.

  Attributes:
    params: the generator's parameter pytree.
    code_low, code_high: float32 `[D]`, per-dimension range of the code on
      the training images (the clipping range).
    code_mean, code_std: float32 `[D]`, the code's mean and standard
      deviation on the training images (the random starts).
    model: the classifier whose features are the code (registry name).
    code_layer: the classifier's layer the code comes from (e.g. "relu6").
    image_size: output height and width.
    widths: the generator's channels per resolution.
  """
  params: dict
  code_low: Array
  code_high: Array
  code_mean: Array
  code_std: Array
  model: str
  code_layer: str
  image_size: int
  widths: tuple

  @property
  def code_dim(self) -> int:
    return int(np.shape(self.code_low)[0])


def generate(prior: GeneratorPrior, codes: Array) -> Array:
  """Images of `codes`.

  Args:
    prior: a `GeneratorPrior`.
    codes: float32 `[N, D]` (`D = prior.code_dim`).

  Returns:
    float32 `[N, S, S, 3]` RGB in [0, 1].
  """
  if codes.ndim != 2 or codes.shape[1] != prior.code_dim:
    raise ValueError(f"codes must be [N, {prior.code_dim}]; got "
                     f"{tuple(codes.shape)}.")
  net = Generator(prior.image_size, tuple(prior.widths))
  return net.apply({"params": prior.params}, codes)


def clip_code(prior: GeneratorPrior, codes: Array) -> Array:
  """`codes` clipped to the range observed on the training data."""
  return jnp.clip(codes, prior.code_low, prior.code_high)


def generator_shapes(image_size: int, code_dim: int,
                     widths: Sequence[int]) -> dict:
  """Flattened (`/`-joined) parameter shapes of a generator."""
  net = Generator(image_size, tuple(widths))
  shapes = jax.eval_shape(
      net.init, jax.random.PRNGKey(0),
      jax.ShapeDtypeStruct((1, code_dim), jnp.float32))["params"]
  return {k: tuple(v.shape) for k, v in core.flatten(shapes).items()}


def save_generator(path: str, prior: GeneratorPrior,
                   metadata: Optional[dict] = None) -> None:
  """Writes `prior` (parameters, code range and what it inverts) to `path`,
  safetensors, atomically; `metadata` adds entries (recipe, metrics)."""
  tree = {"generator": prior.params,
          "code": {"low": prior.code_low, "high": prior.code_high,
                   "mean": prior.code_mean, "std": prior.code_std}}
  meta = {"model": prior.model, "code_layer": prior.code_layer,
          "image_size": str(prior.image_size),
          "widths": json.dumps(list(prior.widths))}
  checkpoint.save(path, tree, {**meta, **(metadata or {})})


def load_generator(path: Optional[str] = None) -> GeneratorPrior:
  """Reads a generator written by `save_generator`.

  Args:
    path: a safetensors file; None: the shipped generator for `cifar_vgg`.

  Returns:
    A `GeneratorPrior`.

  Raises:
    FileNotFoundError: no file at `path`.
    ValueError: the file is not a generator file, or its tensors do not match
      the architecture its metadata names (the message lists the keys).
  """
  path = SHIPPED_GENERATOR if path is None else os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"generator weights not found: {path}")
  meta = checkpoint.read_metadata(path)
  needed = ("model", "code_layer", "image_size", "widths")
  missing = [k for k in needed if k not in meta]
  if missing:
    raise ValueError(f"{path} is not a generator file: its metadata lacks "
                     f"{missing} (write it with synthesis.save_generator).")
  size, widths = int(meta["image_size"]), tuple(json.loads(meta["widths"]))
  # The code size, from whichever tensor holds it; with neither, any size
  # lets `checkpoint.load` list the missing keys.
  code_dim = 1
  with safe_open(path, framework="numpy") as f:
    for key, axis in (("code/low", 0), ("generator/fc1/kernel", 0)):
      if key in f.keys():
        code_dim = f.get_slice(key).get_shape()[axis]
        break
  expected = {f"generator/{k}": v for k, v in
              generator_shapes(size, code_dim, widths).items()}
  expected.update({f"code/{k}": (code_dim,)
                   for k in ("low", "high", "mean", "std")})
  tree, _ = checkpoint.load(path, expected)
  return GeneratorPrior(
      params=jax.tree_util.tree_map(jnp.asarray, tree["generator"]),
      code_low=jnp.asarray(tree["code"]["low"]),
      code_high=jnp.asarray(tree["code"]["high"]),
      code_mean=jnp.asarray(tree["code"]["mean"]),
      code_std=jnp.asarray(tree["code"]["std"]),
      model=meta["model"], code_layer=meta["code_layer"], image_size=size,
      widths=widths)


@flax.struct.dataclass
class GeneratorParam:
  """The `generator` parameterization: the optimized parameters are codes
  float32 `[N, D]`; the image is `G(code)` (resized to `hw` when that differs
  from the generator's size). After every step the code is clipped to the
  range observed on the training data (Nguyen et al. 2016b). The generator's
  weights and the code statistics are traced leaves, so one compiled loop
  serves any trained generator of the same shape.

  Attributes:
    weights: the generator's parameter pytree.
    code_low, code_high, code_mean, code_std: float32 `[D]` (`GeneratorPrior`).
    n: number of images; hw: `(H, W)` of the images.
    image_size, widths: the generator's architecture.
    init_std: random starts are `mean + init_std * std * normal`, clipped.
  """
  weights: Any
  code_low: Array
  code_high: Array
  code_mean: Array
  code_std: Array
  n: int = flax.struct.field(pytree_node=False)
  hw: tuple = flax.struct.field(pytree_node=False)
  image_size: int = flax.struct.field(pytree_node=False)
  widths: tuple = flax.struct.field(pytree_node=False)
  init_std: float = flax.struct.field(pytree_node=False, default=1.0)

  def init(self, key: Array, image: Optional[Array] = None) -> Array:
    """Random codes `[N, D]` around the training mean, inside the range."""
    if image is not None:
      raise ValueError("the generator parameterization starts from codes, not "
                       "images: pass init=None (param.pixels starts from an image).")
    z = jax.random.normal(key, (self.n, self.code_low.shape[0]), jnp.float32)
    return jnp.clip(self.code_mean + self.init_std * self.code_std * z,
                    self.code_low, self.code_high)

  def to_image(self, codes: Array) -> Array:
    img = Generator(self.image_size, self.widths).apply(
        {"params": self.weights}, codes)
    if tuple(self.hw) != (self.image_size, self.image_size):
      img = jnp.clip(resize(img, self.hw), 0.0, 1.0)
    return img

  def constrain(self, codes: Array, step_ops, ascent, step) -> Array:
    """Clips the code to the training range (no pixel operations: `check`)."""
    del step_ops, ascent, step
    return jnp.clip(codes, self.code_low, self.code_high)

  def check(self, step_ops) -> None:
    if step_ops is not None:
      raise ValueError("step_ops (blur, clipping, projections) act on pixels; the "
                       "generator parameterization optimizes a code and cannot "
                       "apply them. Use param.pixels or drop them.")


@functools.lru_cache(maxsize=None)
def _shipped_prior() -> GeneratorPrior:
  # Read once per process: the recipes build a parameterization per call.
  return load_generator(SHIPPED_GENERATOR)


def generator(n: int, hw, prior: Optional[GeneratorPrior] = None,
              init_std: float = 1.0) -> GeneratorParam:
  """The generator parameterization of `n` images of size `hw`.

  Args:
    n: number of images.
    hw: `(H, W)`; the generator's output is resized to it if different.
    prior: a `GeneratorPrior` (None: the shipped one, for `cifar_vgg`).
    init_std: >= 0, spread of the random starting codes in units of the
      code's standard deviation on the training data.
  """
  checks.check_positive(n, "number of images")
  if len(hw) != 2 or min(hw) < 1:
    raise ValueError(f"image size must be (H, W) with H, W >= 1; got {hw!r}.")
  checks.check_positive(init_std, "init_std", allow_zero=True)
  prior = _shipped_prior() if prior is None else prior
  return GeneratorParam(
      prior.params, jnp.asarray(prior.code_low), jnp.asarray(prior.code_high),
      jnp.asarray(prior.code_mean), jnp.asarray(prior.code_std), int(n),
      (int(hw[0]), int(hw[1])), int(prior.image_size), tuple(prior.widths),
      float(init_std))


# Registered by name: the recipes' `param` entry ("generator").
param_lib.PARAMETERIZATIONS["generator"] = generator
