"""Class, neuron and channel visualization by regularized gradient ascent
(Simonyan et al. 2014; Yosinski et al. 2015; Olah et al. 2017)."""

from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from cnnviz_jax import _checks as checks
from cnnviz_jax import objectives as O
from cnnviz_jax.synthesis import engine as opt
from cnnviz_jax.synthesis._recipes import DEFAULT_RECIPE, _param, recipe, setup

Array = jax.Array


def visualize(model, objective: O.Objective, n: int, *, key: Array, steps: int,
              size: Optional[tuple[int, int]] = None, recipe_name: str = DEFAULT_RECIPE,
              init: Optional[Array] = None, **overrides) -> opt.Result:
  """Maximizes any objective with a recipe's regularizers and transforms.

  Args:
    objective: e.g. `objectives.channel("relu3_1", 5)`.
    n: number of images (the objective's per-image targets must match).
    key: PRNG key.
    steps: optimization steps (>= 1).
    size: `(H, W)`, default `model.input_size`.
    recipe_name: a name in `RECIPES`; `**overrides` change single entries
      (`l2=`, `tv_beta=`, `jitter=`, `roll=`, `learning_rate=`, ...).
    init: float32 `[n, H, W, 3]` in [0, 1] starting images (None: noise).

  Returns:
    the engine's `Result` (images float32 `[n, H, W, 3]` in [0, 1]).
  """
  r = recipe(recipe_name, **overrides)
  hw = tuple(size or model.input_size)
  return opt.optimize(model, setup(objective, r), _param(r, n, hw), key=key,
                      steps=steps, init=init)


def _indices(values, name: str) -> np.ndarray:
  """A non-empty 1-D int32 array of indices; floats are refused, not truncated."""
  c = np.asarray(list(values) if not np.isscalar(values) else [values])
  if c.ndim != 1 or c.size == 0:
    raise ValueError(f"{name} must be a non-empty sequence of ints; got {values!r}.")
  if c.dtype.kind not in "iu":
    raise ValueError(f"{name} must be integers; got {values!r} (dtype {c.dtype}).")
  return c.astype(np.int32)


def visualize_class(model, classes: Sequence[int], *, key: Array, steps: int = 100,
                    size: Optional[tuple[int, int]] = None,
                    recipe_name: str = DEFAULT_RECIPE, **overrides) -> Array:
  """Class model visualization: one image per class, optimized together.

  Args:
    model: a Model (defaults tuned on the shipped `cifar_vgg`).
    classes: class indices.
    key: PRNG key.
    steps: optimization steps (>= 1).
    size: `(H, W)`; default the model's input size.
    recipe_name: "yosinski" (default), "simonyan" or "fft"; `**overrides`
      change single options (`l2=`, `blur_sigma=`, `learning_rate=`, ...).

  Returns:
    float32 `[len(classes), H, W, 3]` in [0, 1].
  """
  c = _indices(classes, "classes")
  checks.check_classes(c, model.num_classes, name="classes")
  return visualize(model, O.class_logit(jnp.asarray(c)), len(c), key=key,
                   steps=steps, size=size, recipe_name=recipe_name,
                   **overrides).images


def visualize_neuron(model, layer: str, channels: Sequence[int], *, key: Array,
                     steps: int = 100, y: Optional[int] = None,
                     x: Optional[int] = None, size=None,
                     recipe_name: str = DEFAULT_RECIPE, **overrides) -> Array:
  """Intermediate-neuron visualization: one image per channel of `layer`,
  maximizing the single unit at `(y, x)` (default: the center of the map;
  `visualize_channel` maximizes the channel mean instead).

  Returns float32 `[len(channels), H, W, 3]` in [0, 1]."""
  c = _indices(channels, "channels")
  obj = O.neuron(layer, jnp.asarray(c), y, x)
  return visualize(model, obj, len(c), key=key, steps=steps, size=size,
                   recipe_name=recipe_name, **overrides).images


def visualize_channel(model, layer: str, channels: Sequence[int], *, key: Array,
                      steps: int = 100, size=None, recipe_name: str = DEFAULT_RECIPE,
                      diversity: float = 0.0, **overrides) -> Array:
  """Channel-mean visualization; `diversity` > 0 adds Lucid's batch diversity
  term on the same layer. Returns `[len(channels), H, W, 3]` in [0, 1]."""
  c = _indices(channels, "channels")
  obj = O.channel(layer, jnp.asarray(c))
  if diversity:
    checks.check_positive(diversity, "diversity")
    obj = obj + diversity * O.diversity(layer)
  return visualize(model, obj, len(c), key=key, steps=steps, size=size,
                   recipe_name=recipe_name, **overrides).images
