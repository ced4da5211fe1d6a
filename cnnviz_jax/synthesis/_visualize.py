"""Class, neuron and channel visualization by regularized gradient ascent
(Simonyan et al. 2014; Yosinski et al. 2015; Olah et al. 2017)."""

from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from cnnviz_jax import _checks as checks
from cnnviz_jax import objectives as O
from cnnviz_jax.synthesis import engine as opt
from cnnviz_jax import objectives as R  # priors (l2, l1, tv) live in objectives

Array = jax.Array
from cnnviz_jax.synthesis._recipes import DEFAULT_RECIPE, _param, recipe, setup


def visualize(model, objective: O.Objective, n: int, *, key: Array, steps: int,
              size: Optional[tuple[int, int]] = None, recipe_name: str = DEFAULT_RECIPE,
              init: Optional[Array] = None, **overrides) -> opt.Result:
  """Maximizes any objective with a recipe's regularizers; returns the Result.

  Args:
    objective: e.g. `objectives.channel("relu3_1", 5)`.
    n: number of images (the objective's per-image targets must match).
    size: `(H, W)`, default `model.input_size`.
  """
  r = recipe(recipe_name, **overrides)
  hw = tuple(size or model.input_size)
  s = setup(objective, r)
  return opt.optimize(model, s.objective, _param(r, n, hw), key=key, steps=steps,
                      learning_rate=s.learning_rate, transform=s.transform,
                      step_ops=s.step_ops, init=init)


def _class_array(model, classes) -> np.ndarray:
  c = np.asarray(list(classes) if not np.isscalar(classes) else [classes])
  if c.ndim != 1 or c.size == 0:
    raise ValueError(f"classes must be a non-empty sequence of ints; got {classes!r}.")
  checks.check_classes(c, model.num_classes, name="classes")
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
  c = _class_array(model, classes)
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
  c = np.asarray(list(channels), np.int32)
  if c.ndim != 1 or c.size == 0:
    raise ValueError(f"channels must be a non-empty sequence of ints; got {channels!r}.")
  obj = O.neuron(layer, jnp.asarray(c), y, x)
  return visualize(model, obj, len(c), key=key, steps=steps, size=size,
                   recipe_name=recipe_name, **overrides).images


def visualize_channel(model, layer: str, channels: Sequence[int], *, key: Array,
                      steps: int = 100, size=None, recipe_name: str = DEFAULT_RECIPE,
                      diversity: float = 0.0, **overrides) -> Array:
  """Channel-mean visualization; `diversity` > 0 adds Lucid's batch diversity
  term on the same layer. Returns `[len(channels), H, W, 3]`."""
  c = np.asarray(list(channels), np.int32)
  obj = O.channel(layer, jnp.asarray(c))
  if diversity:
    checks.check_positive(diversity, "diversity")
    obj = obj + diversity * O.diversity(layer)
  return visualize(model, obj, len(c), key=key, steps=steps, size=size,
                   recipe_name=recipe_name, **overrides).images
