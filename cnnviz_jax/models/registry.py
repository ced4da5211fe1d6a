"""The model registry: torchvision-exact VGG/AlexNet in Flax, the shipped CIFAR VGG.

    model = models.load("cifar_vgg")                 # shipped weights, offline
    model = models.load("vgg16", "vgg16.safetensors")  # converted torchvision
    model = models.load("vgg16", key=jax.random.PRNGKey(0))  # random init
    logits, taps = model.apply(model.params, images, taps=("relu5_3", "fc7"))
"""

import json
import os
from typing import Optional

from absl import logging
import jax

from cnnviz_jax import _checks as checks
from cnnviz_jax.models import checkpoint, resnet, zoo
from cnnviz_jax.models.core import Model, init_params, param_shapes

SHIPPED_WEIGHTS = {
    "cifar_vgg": os.path.join(os.path.dirname(__file__), "weights",
                              "cifar_vgg.safetensors"),
}


def names() -> tuple[str, ...]:
  """Registered model names: the sequential zoo and torchvision's ResNets
  (Flax modules wrapped by `wrap.from_flax`)."""
  return tuple(zoo.ARCHITECTURES) + tuple(resnet.ARCHITECTURES)


def spec(name: str) -> zoo.Spec:
  """The architecture `name` (layers, classes, input size, normalization)."""
  if not isinstance(name, str) or name not in zoo.ARCHITECTURES:
    raise ValueError(f"unknown model {name!r}; valid names: "
                     f"{', '.join(zoo.ARCHITECTURES)}.")
  return zoo.ARCHITECTURES[name]()


def build(name: str, params) -> Model:
  """Wraps a parameter pytree of architecture `name` into a Model."""
  s = spec(name)
  if name == "cifar_vgg" or name == "tiny":
    classes = zoo.CIFAR10_CLASSES
  else:
    classes = tuple(f"imagenet_{i}" for i in range(s.num_classes))
  return Model(params=params, name=name, layers=s.layers, class_names=classes,
               input_size=s.input_size, mean=s.mean, std=s.std,
               min_size=s.min_size)


def load(name: str, weights: Optional[str] = None, *,
         key: Optional[jax.Array] = None) -> Model:
  """Loads a model.

  Args:
    name: one of `names()`.
    weights: path to a converted safetensors checkpoint. None loads the
      shipped weights (`cifar_vgg`) or, with `key`, a random initialization.
    key: PRNG key for random initialization (used only when `weights` is None
      and the model has no shipped weights, or when asked explicitly).

  Returns:
    A `Model` (a `WrappedModel` for the ResNets).
  """
  if isinstance(name, str) and name in resnet.ARCHITECTURES:
    return resnet.load(name, weights, key=key)
  if not isinstance(name, str) or name not in zoo.ARCHITECTURES:
    raise ValueError(f"unknown model {name!r}; valid names: {', '.join(names())}.")
  s = spec(name)
  if weights is None and key is not None:
    checks.check_key(key)
    return build(name, init_params(s.layers, key, s.input_size))
  if weights is None:
    weights = SHIPPED_WEIGHTS.get(name)
    if weights is None:
      raise ValueError(
          f"model {name!r} ships no weights: pass weights=PATH to a file made "
          "by `python -m weights_conversion.convert_torchvision`, or key=... "
          "for a random initialization.")
  params, meta = checkpoint.load(weights, param_shapes(s.layers, s.input_size))
  model = build(name, jax.tree_util.tree_map(jax.numpy.asarray, params))
  if meta.get("arch") not in (None, name):
    raise ValueError(f"weights file {weights} holds arch {meta['arch']!r}, "
                     f"not {name!r}.")
  if "class_names" in meta:
    classes = _class_names(meta["class_names"], weights)
    if len(classes) != s.num_classes:
      raise ValueError(f"weights file {weights} lists {len(classes)} class "
                       f"names; {name} has {s.num_classes} outputs.")
    model = model.replace(class_names=classes)
  return model


def _class_names(text: str, path: str) -> tuple[str, ...]:
  """The `class_names` metadata entry: a JSON list of strings."""
  try:
    classes = json.loads(text)
  except json.JSONDecodeError as e:
    raise ValueError(f"weights file {path}: metadata class_names is not valid "
                     f"JSON ({e}); expected a JSON list of strings.") from e
  if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
    raise ValueError(f"weights file {path}: metadata class_names must be a "
                     f"JSON list of strings; got {text[:80]!r}.")
  return tuple(classes)


def load_or_init(name: str, weights: Optional[str] = None, *,
                 key: jax.Array) -> Model:
  """`load(name, weights)` when there are weights (given, or shipped with the
  package), else a random initialization from `key` with a logged warning:
  launchers then run on any architecture, e.g. the test-only `tiny`.
  """
  if weights is None and name not in SHIPPED_WEIGHTS:
    checks.check_key(key)
    logging.warning("%s ships no weights and none were given: using a random "
                    "initialization.", name)
    return load(name, key=key)
  return load(name, weights)
