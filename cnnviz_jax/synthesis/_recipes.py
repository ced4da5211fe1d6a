"""Recipes: named sets of regularizers, transforms and step sizes.

Recipes are named sets of keyword defaults (`RECIPES`), overridable per call.
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
from cnnviz_jax import objectives as R  # priors (l2, l1, tv) live in objectives
from cnnviz_jax.synthesis import engine as opt
from cnnviz_jax.synthesis import param as P
from cnnviz_jax.synthesis import sweep_engine as sweep_lib
from cnnviz_jax.synthesis import transforms as T

Array = jax.Array

# Named recipes for class and neuron visualization. Weights are per-pixel
# means (see `regularizers`); learning rates are for Adam on [0, 1] pixels;
# tv_beta is the TV exponent (2 as in `invert`, Mahendran & Vedaldi 2015).
RECIPES = {
    # Simonyan et al. 2014: the class score with an L2 penalty, plain pixels.
    "simonyan": dict(l2=1.0, tv=0.0, tv_beta=2.0, l1=0.0, jitter=0, blur_sigma=0.0,
                     blur_every=4, clip_norm=0.0, clip_contribution=0.0,
                     learning_rate=0.05, param="pixels"),
    # Yosinski et al. 2015: small L2 decay, periodic Gaussian blur, clipping of
    # small-norm and small-contribution pixels, plus jitter (Lucid).
    "yosinski": dict(l2=0.3, tv=0.0, tv_beta=2.0, l1=0.0, jitter=2, blur_sigma=0.5,
                     blur_every=4, clip_norm=5.0, clip_contribution=5.0,
                     learning_rate=0.05, param="pixels"),
    # Lucid-style: Fourier parameterization with decorrelated colour, jitter.
    "fft": dict(l2=0.0, tv=0.0, tv_beta=2.0, l1=0.0, jitter=2, blur_sigma=0.0,
                blur_every=4, clip_norm=0.0, clip_contribution=0.0,
                learning_rate=0.05, param="fft"),
}
DEFAULT_RECIPE = "yosinski"
# Recipe entries that are not numbers: the parameterization fixes the shapes
# of the optimized parameters, so a sweep cannot vary it. Every other entry
# is a number and a traced leaf of the `Setup` (`setups`).
STATIC_RECIPE_KEYS = ("param",)
# Entries older recipe dicts may lack, with the value they meant.
_RECIPE_DEFAULTS = {"tv_beta": 2.0}


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
            "jitter"):
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


def setups(objective, recipes: Sequence[dict]) -> list[opt.Setup]:
  """Setups for a sweep over recipe dicts, all of one structure (`opt.sweep`).

  Every numeric entry may vary across `recipes`: regularizer weights,
  `tv_beta`, `jitter`, `blur_sigma`, `blur_every`, the clipping percentiles,
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
    `[len(recipes)]` `optimize.Setup`s.

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
    for name, fn in (("l2", R.l2), ("l1", R.l1), ("tv", R.tv)):
      if _used(recipes, name):
        obj = obj - r[name] * (fn(r["tv_beta"]) if name == "tv" else fn())
    transform = T.jitter(r["jitter"]) if _used(recipes, "jitter") else None
    ops = []
    if _used(recipes, "blur_sigma"):
      ops.append(T.gaussian_blur(r["blur_sigma"], every=r["blur_every"]))
    if _used(recipes, "clip_norm"):
      ops.append(T.clip_small_norm(r["clip_norm"]))
    if _used(recipes, "clip_contribution"):
      ops.append(T.clip_small_contribution(r["clip_contribution"]))
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
    **kwargs: passed to `optimize.sweep` (`chunk`, `progress`, ...).

  Returns:
    `Result` with a leading `[S]` axis; point `s` equals `visualize(model,
    objective, n, key=keys[s], **recipes[s])` up to float rounding.
  """
  recipes = list(recipes)
  ss = setups(objective, recipes)
  hw = tuple(size or model.input_size)
  return sweep_lib.sweep(model, ss, _param(recipes[0], n, hw), keys=keys, steps=steps,
                   init=init, **kwargs)
