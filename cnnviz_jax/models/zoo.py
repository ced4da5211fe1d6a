"""Architectures as data: torchvision's VGG and AlexNet, the CIFAR VGG, a tiny
test model. Each builder returns `(layers, spec)`; `registry.load` makes Models.
"""

import functools
from typing import NamedTuple

from cnnviz_jax.data._cifar import CIFAR10_CLASSES  # noqa: F401 (re-exported)
from cnnviz_jax.models.core import Layer, conv, dense, maxpool, relu

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Per-channel statistics of the CIFAR-10 training set (50,000 images).
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


class Spec(NamedTuple):
  layers: tuple
  num_classes: int
  input_size: tuple
  mean: tuple
  std: tuple
  min_size: int


# torchvision/models/vgg.py `cfgs`.
VGG_CFGS = {
    "A": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "B": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "D": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
          512, 512, 512, "M"),
    "E": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512,
          512, "M", 512, 512, 512, 512, "M"),
}


def _conv_blocks(cfg, batch_norm: bool, prefix: str = "features"):
  """Layers of a VGG-style feature extractor with canonical + torch names."""
  layers, idx, block, pos = [], 0, 1, 1
  for v in cfg:
    if v == "M":
      layers.append(maxpool(f"pool{block}", alias=f"{prefix}.{idx}"))
      idx, block, pos = idx + 1, block + 1, 1
      continue
    layers.append(conv(f"conv{block}_{pos}", v, alias=f"{prefix}.{idx}"))
    idx += 1
    if batch_norm:
      layers.append(Layer(f"bn{block}_{pos}", "bn", f"{prefix}.{idx}"))
      idx += 1
    layers.append(relu(f"relu{block}_{pos}", alias=f"{prefix}.{idx}"))
    idx, pos = idx + 1, pos + 1
  return layers


def vgg(cfg: str, batch_norm: bool = False) -> Spec:
  """torchvision `vgg*`/`vgg*_bn`: features, AdaptiveAvgPool2d(7), classifier."""
  layers = _conv_blocks(VGG_CFGS[cfg], batch_norm)
  layers += [
      Layer("avgpool", "adaptive_avgpool", "avgpool", (("size", (7, 7)),)),
      Layer("flatten", "flatten"),
      dense("fc6", 4096, "classifier.0"), relu("relu6", "classifier.1"),
      Layer("drop6", "dropout", "classifier.2"),
      dense("fc7", 4096, "classifier.3"), relu("relu7", "classifier.4"),
      Layer("drop7", "dropout", "classifier.5"),
      dense("fc8", 1000, "classifier.6"),
  ]
  return Spec(tuple(layers), 1000, (224, 224), IMAGENET_MEAN, IMAGENET_STD, 32)


def alexnet() -> Spec:
  """torchvision `alexnet` (the one-GPU variant of Krizhevsky 2014)."""
  layers = (
      conv("conv1", 64, 11, 4, 2, "features.0"), relu("relu1", "features.1"),
      maxpool("pool1", 3, 2, "features.2"),
      conv("conv2", 192, 5, 1, 2, "features.3"), relu("relu2", "features.4"),
      maxpool("pool2", 3, 2, "features.5"),
      conv("conv3", 384, 3, 1, 1, "features.6"), relu("relu3", "features.7"),
      conv("conv4", 256, 3, 1, 1, "features.8"), relu("relu4", "features.9"),
      conv("conv5", 256, 3, 1, 1, "features.10"), relu("relu5", "features.11"),
      maxpool("pool5", 3, 2, "features.12"),
      Layer("avgpool", "adaptive_avgpool", "avgpool", (("size", (6, 6)),)),
      Layer("flatten", "flatten"),
      Layer("drop6", "dropout", "classifier.0"),
      dense("fc6", 4096, "classifier.1"), relu("relu6", "classifier.2"),
      Layer("drop7", "dropout", "classifier.3"),
      dense("fc7", 4096, "classifier.4"), relu("relu7", "classifier.5"),
      dense("fc8", 1000, "classifier.6"),
  )
  # Smallest input for which every pooling window fits: 63x63.
  return Spec(layers, 1000, (224, 224), IMAGENET_MEAN, IMAGENET_STD, 63)


# The shipped CIFAR-10 network: VGG blocks, a global average pool so any input
# size >= 32 works, then three fully connected layers. The widths keep the
# weights under 10 MB in float32 and its last 3x3 conv at 4x4 resolution
# (XLA:CPU is slow on 3x3 convolutions over 2x2 maps).
CIFAR_VGG_CFG = (64, "M", 128, 128, "M", 256, 256, "M", 384)
CIFAR_FC = (256, 256)


def cifar_vgg() -> Spec:
  layers = _conv_blocks(CIFAR_VGG_CFG, batch_norm=False)
  layers += [
      Layer("pool4", "global_avgpool"),
      dense("fc6", CIFAR_FC[0]), relu("relu6"),
      dense("fc7", CIFAR_FC[1]), relu("relu7"),
      dense("fc8", 10),
  ]
  return Spec(tuple(layers), 10, (32, 32), CIFAR_MEAN, CIFAR_STD, 32)


def tiny() -> Spec:
  """A test-only network (a few thousand parameters) with the same naming."""
  layers = _conv_blocks((8, "M", 16, "M"), batch_norm=False)
  layers += [Layer("pool3", "global_avgpool"), dense("fc6", 16), relu("relu6"),
             dense("fc7", 10)]
  return Spec(tuple(layers), 10, (16, 16), CIFAR_MEAN, CIFAR_STD, 4)


ARCHITECTURES = {
    "alexnet": alexnet,
    "vgg11": functools.partial(vgg, "A"),
    "vgg13": functools.partial(vgg, "B"),
    "vgg16": functools.partial(vgg, "D"),
    "vgg19": functools.partial(vgg, "E"),
    "vgg11_bn": functools.partial(vgg, "A", True),
    "vgg13_bn": functools.partial(vgg, "B", True),
    "vgg16_bn": functools.partial(vgg, "D", True),
    "vgg19_bn": functools.partial(vgg, "E", True),
    "cifar_vgg": cifar_vgg,
    "tiny": tiny,
}
IMAGENET_ARCHITECTURES = tuple(k for k in ARCHITECTURES
                               if k.startswith(("vgg", "alexnet")))
