"""torchvision's ResNet-18 and ResNet-50 as ordinary Flax modules.

They are written the way a user would write their own network (standard
`nn.Conv`, `nn.BatchNorm` with a `batch_stats` collection, skip connections)
and join the toolbox through `from_flax`, like any user model:

    model = models.resnet.load("resnet18", "resnet18.safetensors")
    cam = attribution.grad_cam(model, images, labels, layer="layer4")

Submodules carry torchvision's names, so a tap is torchvision's module path
with `/` (or `.`): `layer4`, `layer4/1`, `layer4/1/conv2`, `layer4/1/relu`.
torchvision reuses one `relu` module twice per block; here too, so
`layer4/1/relu:0` is the ReLU after `bn1` (`:1` after `bn2` in a Bottleneck)
and `layer4/1/relu` the last call, the block output.

BatchNorm runs in eval mode (`use_running_average=True`), with torch's eps
1e-5. The architecture follows torchvision/models/resnet.py (v1.5: the stride
of a Bottleneck is on its 3x3 convolution).
"""

import functools
import json
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cnnviz_jax.models import checkpoint, core, wrap
from cnnviz_jax.models.zoo import IMAGENET_MEAN, IMAGENET_STD

# torchvision/models/resnet.py `_resnet` weight init: kaiming normal, fan_out.
_CONV_INIT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
# torch.nn.BatchNorm2d's default eps.
_BN_EPS = 1e-5


class ReLU(nn.Module):
  """`jax.nn.relu` as a submodule, so that it is a named tap like torch's."""

  @nn.compact
  def __call__(self, x):
    return jax.nn.relu(x)


def _bn(name):
  return nn.BatchNorm(use_running_average=True, epsilon=_BN_EPS, name=name)


def _conv(features, kernel, stride, name):
  pad = kernel // 2  # torchvision: padding 3 for 7x7, 1 for 3x3, 0 for 1x1
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride),
                 padding=((pad, pad), (pad, pad)), use_bias=False,
                 kernel_init=_CONV_INIT, name=name)


def max_pool_3x3_s2(x):
  """torch.nn.MaxPool2d(3, stride=2, padding=1): padding never wins a max."""
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1),
                               (1, 2, 2, 1), ((0, 0), (1, 1), (1, 1), (0, 0)))


class BasicBlock(nn.Module):
  """torchvision BasicBlock: two 3x3 convolutions and a skip connection."""
  features: int
  stride: int = 1
  downsample: bool = False
  expansion = 1

  @nn.compact
  def __call__(self, x):
    relu = ReLU(name="relu")
    y = relu(_bn("bn1")(_conv(self.features, 3, self.stride, "conv1")(x)))
    y = _bn("bn2")(_conv(self.features, 3, 1, "conv2")(y))
    if self.downsample:
      x = Downsample(self.features, self.stride, name="downsample")(x)
    return relu(y + x)


class Bottleneck(nn.Module):
  """torchvision Bottleneck (v1.5): 1x1, 3x3 (strided), 1x1 x4 expansion."""
  features: int
  stride: int = 1
  downsample: bool = False
  expansion = 4

  @nn.compact
  def __call__(self, x):
    relu = ReLU(name="relu")
    y = relu(_bn("bn1")(_conv(self.features, 1, 1, "conv1")(x)))
    y = relu(_bn("bn2")(_conv(self.features, 3, self.stride, "conv2")(y)))
    y = _bn("bn3")(_conv(self.features * 4, 1, 1, "conv3")(y))
    if self.downsample:
      x = Downsample(self.features * 4, self.stride, name="downsample")(x)
    return relu(y + x)


class Downsample(nn.Module):
  """torchvision's `downsample` Sequential: 1x1 conv (`0`) and BatchNorm (`1`)."""
  features: int
  stride: int

  @nn.compact
  def __call__(self, x):
    return _bn("1")(_conv(self.features, 1, self.stride, "0")(x))


class Stage(nn.Module):
  """torchvision's `layerK` Sequential of blocks named `0`, `1`, ..."""
  block: type
  features: int
  blocks: int
  stride: int
  in_features: int

  @nn.compact
  def __call__(self, x):
    out = self.features * self.block.expansion
    for i in range(self.blocks):
      first = i == 0
      x = self.block(self.features, self.stride if first else 1,
                     downsample=first and (self.stride != 1 or
                                           self.in_features != out),
                     name=str(i))(x)
    return x


class ResNet(nn.Module):
  """torchvision ResNet on normalized NHWC input; returns logits `[N, classes]`."""
  block: type
  stage_sizes: Sequence[int]
  num_classes: int = 1000

  @nn.compact
  def __call__(self, x):
    x = ReLU(name="relu")(_bn("bn1")(_conv(64, 7, 2, "conv1")(x)))
    x = max_pool_3x3_s2(x)
    in_features = 64
    for k, (n, features) in enumerate(zip(self.stage_sizes, (64, 128, 256, 512))):
      x = Stage(self.block, features, n, 1 if k == 0 else 2, in_features,
                name=f"layer{k + 1}")(x)
      in_features = features * self.block.expansion
    x = x.mean(axis=(1, 2))  # AdaptiveAvgPool2d((1, 1)) + flatten
    # torch Linear init is uniform(+-1/sqrt(fan_in)) for weight and bias.
    init = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")
    return nn.Dense(self.num_classes, kernel_init=init, name="fc")(x)


resnet18_module = functools.partial(ResNet, BasicBlock, (2, 2, 2, 2))
resnet50_module = functools.partial(ResNet, Bottleneck, (3, 4, 6, 3))

ARCHITECTURES = {"resnet18": resnet18_module, "resnet50": resnet50_module}
# torchvision's ImageNet evaluation size.
INPUT_SIZE = (224, 224)
# Five stride-2 stages: 32 pixels leave layer4 one position wide.
MIN_SIZE = 32


def _module(name: str) -> ResNet:
  if name not in ARCHITECTURES:
    raise ValueError(f"unknown ResNet {name!r}; valid: {', '.join(ARCHITECTURES)}.")
  return ARCHITECTURES[name]()


def init_variables(name: str, key: jax.Array) -> dict:
  """Random `{"params", "batch_stats"}` (torchvision's initializers; running
  statistics mean 0, variance 1 as a fresh torch BatchNorm)."""
  # The parameters do not depend on the input size (global average pooling):
  # a MIN_SIZE input makes the initializing forward pass cheap.
  return jax.jit(_module(name).init)(
      key, jnp.zeros((1, MIN_SIZE, MIN_SIZE, 3), jnp.float32))


def variable_shapes(name: str) -> dict:
  """`{"params/conv1/kernel": shape, "batch_stats/bn1/mean": shape, ...}`."""
  tree = jax.eval_shape(lambda k: init_variables(name, k), jax.random.PRNGKey(0))
  return {k: tuple(v.shape) for k, v in core.flatten(tree).items()}


def build(name: str, variables, class_names: Optional[Sequence[str]] = None):
  """Wraps `variables` of ResNet `name` with `from_flax` (ImageNet metadata)."""
  module = _module(name)
  return wrap.from_flax(
      module, variables, name=name,
      class_names=class_names or tuple(f"imagenet_{i}" for i in range(
          module.num_classes)),
      mean=IMAGENET_MEAN, std=IMAGENET_STD, input_size=INPUT_SIZE,
      min_size=MIN_SIZE)


def load(name: str, weights: Optional[str] = None, *,
         key: Optional[jax.Array] = None):
  """A ResNet from converted weights (`weights_conversion.convert_torchvision
  --arch=resnet18`) or, with `key`, a random initialization.

  Args:
    name: "resnet18" or "resnet50".
    weights: path to a converted safetensors file.
    key: PRNG key for a random initialization when `weights` is None.

  Returns:
    A wrapped model (`wrap.FlaxModel`) that every technique accepts.
  """
  _module(name)
  if weights is None:
    if key is None:
      raise ValueError(f"{name} ships no weights: pass weights=PATH (made by "
                       "`python -m weights_conversion.convert_torchvision "
                       f"--arch={name}`) or key=... for a random init.")
    return build(name, init_variables(name, key))
  variables, meta = checkpoint.load(weights, variable_shapes(name))
  if meta.get("arch") not in (None, name):
    raise ValueError(f"weights file {weights} holds arch {meta['arch']!r}, "
                     f"not {name!r}.")
  classes = None
  if "class_names" in meta:
    classes = tuple(json.loads(meta["class_names"]))
    if len(classes) != 1000:
      raise ValueError(f"weights file {weights} lists {len(classes)} class "
                       f"names; {name} has 1000 outputs.")
  return build(name, jax.tree_util.tree_map(jnp.asarray, variables), classes)


def count(name: str) -> int:
  """Parameter count (weights and BatchNorm affine terms; torch's
  `sum(p.numel() for p in net.parameters())`)."""
  return int(sum(np.prod(s) for k, s in variable_shapes(name).items()
                 if k.startswith("params/")))
