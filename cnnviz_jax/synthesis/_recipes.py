"""Recipes: named sets of regularizers, transforms and step sizes.

Recipes are named sets of keyword defaults (`RECIPES`), overridable per call;
`setups` builds each component a non-zero entry switches on by its
registered name (`transforms.get`, the priors in `objectives`).
A sweep over recipe dicts (any of their numbers) runs as one computation:

    recipes = [synthesis.recipe(tv=t, tv_beta=b) for t in (0.1, 1.0) for b in (1.5, 2.0)]
    res = synthesis.sweep(model, objectives.class_logit(3), 1, recipes,
                          keys=jax.random.split(key, 4), steps=100)
"""

from typing import Optional, Sequence

import jax
import numpy as np

from cnnviz_jax import _checks as checks
from cnnviz_jax import objectives as O
from cnnviz_jax.synthesis import engine as opt
from cnnviz_jax.synthesis import param as P
from cnnviz_jax.synthesis import sweep_engine as sweep_lib
from cnnviz_jax.synthesis import transforms as T

Array = jax.Array

# Named recipes. Weights are per-pixel means (see `objectives.l2`); learning
# rates are for Adam on [0, 1] pixels; tv_beta is the TV exponent; jitter
# translates (reflect-padded) and roll shifts circularly, by up to that many
# pixels.
_OFF = dict(l2=0.0, tv=0.0, tv_beta=2.0, l1=0.0, jitter=0, roll=0, blur_sigma=0.0,
            blur_every=4, clip_norm=0.0, clip_contribution=0.0,
            learning_rate=0.05, param="pixels")
RECIPES = {
    # Simonyan et al. 2014: the class score with an L2 penalty, plain pixels.
    "simonyan": dict(_OFF, l2=1.0),
    # Yosinski et al. 2015: small L2 decay, periodic Gaussian blur, clipping of
    # small-norm and small-contribution pixels, plus jitter (Lucid).
    "yosinski": dict(_OFF, l2=0.3, jitter=2, blur_sigma=0.5, clip_norm=5.0,
                     clip_contribution=5.0),
    # Lucid-style: Fourier parameterization with decorrelated colour, jitter.
    "fft": dict(_OFF, jitter=2, param="fft"),
    # Feature inversion (Mahendran & Vedaldi 2015): a TV^2 prior (`invert`).
    "mahendran": dict(_OFF, tv=0.05),
    # Nguyen et al. 2016b: optimize the code of a generator trained to invert
    # the shipped cifar_vgg's fc6 (`synthesis.load_generator`), clipped to
    # its training range every step; the generator is the image prior. The
    # code's training std is about 0.5 per unit: Adam at 0.1 moves it a few
    # std in 100 steps (measured: p = 1.00 on all 10 classes; at 0.05 the
    # bird class reaches only 0.74 in 100 steps).
    "generator": dict(_OFF, param="generator", learning_rate=0.1),
}
DEFAULT_RECIPE = "yosinski"
# The components a non-zero recipe entry switches on: (entry, factory or
# registered transform name, the entries passed as its arguments).
_PRIORS = (("l2", O.l2, ()), ("l1", O.l1, ()), ("tv", O.tv, ("tv_beta",)))
_TRANSFORMS = (("jitter", "jitter", ("jitter",)), ("roll", "roll", ("roll",)))
_STEP_OPS = (("blur_sigma", "gaussian_blur", ("blur_sigma", "blur_every")),
             ("clip_norm", "clip_small_norm", ("clip_norm",)),
             ("clip_contribution", "clip_small_contribution", ("clip_contribution",)))
# Recipe entries that are not numbers: the parameterization fixes the shapes
# of the optimized parameters, so a sweep cannot vary it. Every other entry
# is a number and a traced leaf of the `Setup` (`setups`).
STATIC_RECIPE_KEYS = ("param",)
# Entries older recipe dicts may lack, with the value they meant.
_RECIPE_DEFAULTS = {"tv_beta": 2.0, "roll": 0}


def recipe(name: str = DEFAULT_RECIPE, **overrides) -> dict:
  """The keyword defaults of recipe `name`, with `overrides` applied."""
  if name not in RECIPES:
    raise ValueError(f"unknown recipe {name!r}; valid: {', '.join(RECIPES)}.")
  out = dict(RECIPES[name])
  unknown = set(overrides) - set(out)
  if unknown:
    raise ValueError(f"unknown recipe options {sorted(unknown)}; valid: "
                     f"{', '.join(sorted(out))}.")
  out.update(overrides)
  _check_recipe(out)
  return out


def _check_recipe(r: dict) -> dict:
  r = {**_RECIPE_DEFAULTS, **r}
  valid = set(RECIPES[DEFAULT_RECIPE])
  if set(r) != valid:
    raise ValueError(f"recipe dict has unknown options {sorted(set(r) - valid)} "
                     f"and lacks {sorted(valid - set(r))}; use synthesis.recipe().")
  for k in ("l2", "tv", "l1", "blur_sigma", "clip_norm", "clip_contribution",
            "jitter", "roll"):
    checks.check_positive(r[k], k, allow_zero=True)
  checks.check_positive(r["learning_rate"], "learning_rate")
  checks.check_positive(r["blur_every"], "blur_every")
  if checks.is_concrete(r["tv_beta"]) and not np.all(np.asarray(r["tv_beta"]) >= 1.0):
    raise ValueError(f"tv_beta must be >= 1; got {r['tv_beta']!r}.")
  if r["param"] not in P.PARAMETERIZATIONS:
    raise ValueError(f"unknown param {r['param']!r}; valid: "
                     f"{', '.join(P.PARAMETERIZATIONS)}.")
  return r


def _used(recipes, k) -> bool:
  """Whether some point uses the component switched on by a non-zero `k`."""
  return any(not checks.is_concrete(r[k]) or np.any(np.asarray(r[k]) != 0)
             for r in recipes)


def _parts(table, r, recipes):
  """The components of `table` some point switches on, with `r`'s arguments."""
  return [(key, component, tuple(r[a] for a in args))
          for key, component, args in table if _used(recipes, key)]


def setups(objective, recipes: Sequence[dict]) -> list[opt.Setup]:
  """Setups for a sweep over recipe dicts, all of one structure (`sweep`).

  Every numeric entry may vary across `recipes`: regularizer weights,
  `tv_beta`, `jitter`, `roll`, `blur_sigma`, `blur_every`, the clipping percentiles,
  `learning_rate`. A component (a regularizer term, jitter, blur, clipping)
  is in every point when some point uses it (a non-zero value); at zero it
  is an exact no-op (weight 0, jitter 0, sigma 0 or percentile 0), so each
  point runs as `setup(objective, recipe)` alone does, up to float rounding.
  The jitter pad and blur kernel take the sweep's largest size (blur radius
  max(1, ceil(3 sigma)) for the largest sigma), and each point masks them to
  its own (`transforms.GaussianBlur`).

  Args:
    objective: an `Objective`, or one per recipe (differing only in numbers).
    recipes: dicts from `recipe` (every key present).

  Returns:
    `[len(recipes)]` `engine.Setup`s.

  Raises:
    ValueError: for a bad value, or when a `STATIC_RECIPE_KEYS` entry
      (`param`) differs between recipes.
  """
  recipes = [_check_recipe(dict(r)) for r in recipes]
  if not recipes:
    raise ValueError("setups needs at least one recipe dict.")
  for k in STATIC_RECIPE_KEYS:
    vals = [r[k] for r in recipes]
    if any(v != vals[0] for v in vals):
      raise ValueError(f"recipe key {k!r} must be equal across the sweep (it fixes "
                       f"the parameterization's shapes); got {vals}. Run one "
                       f"sweep per {k} value.")
  if isinstance(objective, O.Objective):
    objs = [objective] * len(recipes)
  else:
    objs = list(objective)
    if len(objs) != len(recipes):
      raise ValueError(f"got {len(objs)} objectives for {len(recipes)} recipes.")
  out = []
  for obj, r in zip(objs, recipes):
    for key, prior, args in _parts(_PRIORS, r, recipes):
      obj = obj - r[key] * prior(*args)
    # All input transforms or none: `compose` splits the step key among
    # them, so a transform at zero must still take its share for a point to
    # draw the same shifts alone as in a sweep.
    transform = None
    if any(_used(recipes, key) for key, _, _ in _TRANSFORMS):
      transform = T.compose(*[T.get(name, *(r[a] for a in args))
                              for _, name, args in _TRANSFORMS])
    ops = [T.get(name, *args) for _, name, args in _parts(_STEP_OPS, r, recipes)]
    step_ops = T.compose_steps(*ops) if ops else None
    out.append(opt.Setup(obj, transform, step_ops, r["learning_rate"]))
  return sweep_lib.align_bounds(out)


def setup(objective: O.Objective, r: dict) -> opt.Setup:
  """Objective, transforms and between-step operations for recipe dict `r`."""
  return setups(objective, [r])[0]


def _param(r, n, hw):
  return P.PARAMETERIZATIONS[r["param"]](n, hw)


def sweep(model, objective, n: int, recipes: Sequence[dict], *, keys: Array,
          steps: int, size: Optional[tuple[int, int]] = None,
          init: Optional[Array] = None, **kwargs) -> opt.Result:
  """`visualize` for S recipe dicts as one vmapped computation (`setups`).

  Args:
    objective: an `Objective`, or one per recipe.
    n: images per point.
    recipes: S dicts from `recipe`, e.g. `[recipe(tv=t) for t in (0.1, 1.0)]`.
    keys: `[S]` PRNG keys.
    size: `(H, W)`, default `model.input_size`.
    **kwargs: passed to `sweep_engine.sweep` (`chunk`, `progress`, ...).

  Returns:
    `Result` with a leading `[S]` axis; point `s` equals `visualize(model,
    objective, n, key=keys[s], **recipes[s])` up to float rounding.
  """
  recipes = list(recipes)
  ss = setups(objective, recipes)
  hw = tuple(size or model.input_size)
  return sweep_lib.sweep(model, ss, _param(recipes[0], n, hw), keys=keys, steps=steps,
                   init=init, **kwargs)
