"""The Objective algebra, the term registry, resolution and evaluation.

    obj = 0.5 * channel("relu4_2", 7) - 1e-4 * objectives.l2()
    obj = class_logit(jnp.arange(10))          # one target class per image

An `Objective` is a frozen pytree: a tuple of weighted terms. Each term names a
registered function (`REGISTRY`), its static arguments (layer names, which are
hashable and fix the compiled program) and its dynamic arguments (weights, class
indices, channel indices, target activations), which are traced leaves. So two
objectives that differ only in numbers share one compiled loop, and a sweep can
`vmap` over objectives stacked leaf-wise.

Every term maps `acts` (a dict: `"input"` -> the image `[N, H, W, 3]`,
`"logits"` -> `[N, classes]`, and layer taps) to a per-image value `[N]`; the
objective is *maximized*. Integer arguments (classes, channels, positions) may
be a scalar (same for every image) or an int array `[N]` (one per image);
non-integers are refused, never truncated.

Terms are open for extension: a new kind registers its function together with
the taps it reads and its own check (`register`), so `resolve` lists no kinds
by hand. The activation terms live in `_activations`, the image priors in
`_priors`; a Gram-matrix term, say, lives in its own module:

    @objectives.register("gram", taps=lambda layer: (layer,),
                         check=objectives.check_layer)
    def _gram(acts, layer, target): ...
"""

from typing import Any, Callable, Mapping, NamedTuple, Optional, Union

import flax
import jax
import numpy as np

from cnnviz_jax import _checks as checks

Array = jax.Array
TermFn = Callable[..., Array]
# check(model, image_hw, static, args) -> (static, args), resolved.
CheckFn = Callable[[Any, tuple, tuple, dict], tuple]


class TermKind(NamedTuple):
  """A registered kind of term.

  Attributes:
    fn: `fn(acts, *static, **args) -> [N]`.
    taps: the taps the term reads: a fixed tuple (`("logits",)`) or a function
      of the term's static arguments (`lambda layer: (layer,)`).
    check: `check(model, image_hw, static, args) -> (static, args)`: raises
      ValueError for arguments that do not fit the model at that input size
      and returns them resolved (canonical layer names); None: nothing to do.
  """
  fn: TermFn
  taps: Union[tuple, Callable[..., tuple]]
  check: Optional[CheckFn] = None


# Name -> TermKind. Filled at import time by `register`.
REGISTRY: dict[str, TermKind] = {}


def register(name: str, *, taps: Union[tuple, Callable[..., tuple]],
             check: Optional[CheckFn] = None):
  """Decorator registering a term function `fn(acts, *static, **args) -> [N]`.

  Args:
    name: the term's kind, unique.
    taps: what it reads (see `TermKind.taps`).
    check: its validation and resolution (see `TermKind.check`).
  """
  if not (isinstance(taps, tuple) or callable(taps)):
    raise ValueError(f"taps of term {name!r} must be a tuple of tap names or a "
                     f"function of the static arguments; got {taps!r}.")

  def wrap(fn):
    if name in REGISTRY:
      raise ValueError(f"objective term {name!r} registered twice.")
    REGISTRY[name] = TermKind(fn, taps, check)
    return fn
  return wrap


def _kind(name: str) -> TermKind:
  if name not in REGISTRY:
    raise ValueError(f"unknown objective term {name!r}; registered: "
                     f"{', '.join(sorted(REGISTRY))}.")
  return REGISTRY[name]


@flax.struct.dataclass
class Term:
  """One weighted term: `weight * REGISTRY[kind].fn(acts, *static, **args)`."""
  weight: Any
  args: dict
  kind: str = flax.struct.field(pytree_node=False)
  static: tuple = flax.struct.field(pytree_node=False, default=())

  @property
  def taps(self) -> tuple[str, ...]:
    """The taps the term reads ("input", "logits" or layer names)."""
    taps = _kind(self.kind).taps
    return tuple(taps(*self.static) if callable(taps) else taps)


@flax.struct.dataclass
class Objective:
  """A weighted sum of terms, to be maximized. Supports `+ - *` and unary `-`."""
  terms: tuple

  @property
  def taps(self) -> tuple[str, ...]:
    """Every tap the objective reads, in first-use order."""
    out = []
    for t in self.terms:
      out += [x for x in t.taps if x not in out]
    return tuple(out)

  def terms_values(self, acts: Mapping[str, Array]) -> list[Array]:
    return [t.weight * _kind(t.kind).fn(acts, *t.static, **t.args)
            for t in self.terms]

  def __call__(self, acts: Mapping[str, Array]) -> Array:
    """Per-image value `[N]` (sum of weighted terms)."""
    return sum(self.terms_values(acts))

  def __add__(self, other):
    if not isinstance(other, Objective):
      return NotImplemented
    return Objective(self.terms + other.terms)

  def __sub__(self, other):
    if not isinstance(other, Objective):
      return NotImplemented
    return self + (-1.0) * other

  def __neg__(self):
    return (-1.0) * self

  def __mul__(self, scale):
    if isinstance(scale, Objective):
      return NotImplemented
    return Objective(tuple(t.replace(weight=t.weight * scale) for t in self.terms))

  __rmul__ = __mul__

  def __truediv__(self, scale):
    return self * (1.0 / scale)


def term(kind: str, *static, weight: float = 1.0, **args) -> Objective:
  """An objective of one registered term (for user extensions)."""
  _kind(kind)
  return Objective((Term(weight=weight, args=args, kind=kind, static=static),))


# ----------------------------------------------------------------- checks

def check_integer(value: Any, name: str) -> None:
  """Raises ValueError unless `value` is an int or an int array (traced
  values: by dtype). Floats are refused rather than truncated."""
  dtype = getattr(value, "dtype", None)
  if dtype is None:
    if isinstance(value, (bool, np.bool_)):
      dtype = np.dtype(bool)
    else:
      try:
        dtype = np.asarray(value).dtype
      except (TypeError, ValueError):
        dtype = None
  if dtype is None or np.dtype(dtype).kind not in "iu":
    raise ValueError(f"{name} must be an integer or an int array [N]; got "
                     f"{value!r}" + (f" (dtype {dtype})." if dtype is not None else "."))


def check_layer(model, image_hw: tuple, static: tuple, args: dict) -> tuple:
  """The check of a term whose first static argument is a layer: resolves it
  to its canonical name (raising for an unknown one)."""
  return (model.resolve(static[0]),) + tuple(static[1:]), args


def resolve(objective: Objective, model, image_hw: tuple[int, int]) -> Objective:
  """Validates `objective` for `model` at input size `image_hw` with each
  term's registered check, and returns it with canonical layer names."""
  if not isinstance(objective, Objective):
    raise ValueError(f"objective must be an Objective; got {type(objective).__name__}.")
  if not objective.terms:
    raise ValueError("objective has no terms.")
  hw = tuple(int(v) for v in image_hw)
  terms = []
  for t in objective.terms:
    check = _kind(t.kind).check
    static, args = (t.static, dict(t.args)) if check is None else check(
        model, hw, tuple(t.static), dict(t.args))
    w = t.weight
    if checks.is_concrete(w) and not np.all(np.isfinite(np.asarray(w))):
      raise ValueError(f"objective term {t.kind!r} has a non-finite weight {w!r}.")
    terms.append(t.replace(static=tuple(static), args=args))
  return Objective(tuple(terms))


def activations(objective: Objective, model, x: Array, *, params=None,
                relu: Callable[[Array], Array] = jax.nn.relu,
                start: Optional[str] = None) -> dict:
  """The taps `objective` reads, `{tap: [N, ...]}`, computing no more of the
  network than they need. Arguments as `evaluate`."""
  params = model.params if params is None else params
  taps = objective.taps
  layers = tuple(t for t in taps if t not in ("input", "logits"))
  need_logits = "logits" in taps
  acts = {}
  if start is None:
    acts["input"] = x
  elif "input" in taps:
    raise ValueError(f"an objective on the input image cannot be evaluated "
                     f"from layer {start!r} onward.")
  if need_logits or layers:
    if start is None:
      logits, out = model.apply(params, x, taps=layers, relu=relu,
                                logits=need_logits)
    else:
      logits, out = model.apply_from(params, x, start, taps=layers, relu=relu,
                                     logits=need_logits)
    acts.update(out)
    if need_logits:
      acts["logits"] = logits
  return acts


def evaluate(objective: Objective, model, x: Array, *, params=None,
             relu: Callable[[Array], Array] = jax.nn.relu,
             start: Optional[str] = None) -> Array:
  """The objective's value per image `[N]`, on the model's taps.

  Args:
    objective: a resolved `Objective` (canonical layer names).
    model: a `Model`.
    x: float32 `[N, H, W, 3]` RGB in [0, 1] (the `"input"` tap); with
      `start`, the activation of layer `start` instead.
    params: parameters to use instead of `model.params`.
    relu: the ReLU of every relu layer (see `Model.apply`).
    start: run only the layers after `start` (`Model.apply_from`); the
      objective may then read only taps after it (and the logits).

  Returns:
    float32 `[N]`.
  """
  return objective(activations(objective, model, x, params=params, relu=relu,
                               start=start))
