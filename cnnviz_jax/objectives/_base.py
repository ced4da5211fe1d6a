"""Objectives on named activations, composable arithmetically (Lucid style).

    obj = 0.5 * channel("relu4_2", 7) - 1e-4 * regularizers.l2()
    obj = class_logit(jnp.arange(10))          # one target class per image

An `Objective` is a frozen pytree: a tuple of weighted terms. Each term names a
registered function (`REGISTRY`), its static arguments (layer names, which are
hashable and fix the compiled program) and its dynamic arguments (weights, class
indices, channel indices, target activations), which are traced leaves. So two
objectives that differ only in numbers share one compiled loop, and a stack of
objectives (`stack`) can be `vmap`ped as a hyperparameter sweep.

Every term maps `acts` (a dict: `"input"` -> the image `[N, H, W, 3]` before
transforms, `"logits"` -> `[N, classes]`, and layer taps) to a per-image value
`[N]`; the objective is *maximized*. Integer arguments (classes, channels) may
be a scalar (same for every image) or an array `[N]` (one per image).
"""

from typing import Any, Callable, Mapping

import flax
import jax
import jax.numpy as jnp
import numpy as np

from cnnviz_jax import _checks as checks

Array = jax.Array
TermFn = Callable[..., Array]

# Name -> (function, needs logits). Filled at import time by `register`.
REGISTRY: dict[str, TermFn] = {}


def register(name: str):
  """Decorator adding a term function `fn(acts, *static, **dynamic) -> [N]`."""
  def wrap(fn):
    if name in REGISTRY:
      raise ValueError(f"objective term {name!r} registered twice.")
    REGISTRY[name] = fn
    return fn
  return wrap


@flax.struct.dataclass
class Term:
  """One weighted term: `weight * REGISTRY[kind](acts, *static, **args)`."""
  weight: Any
  args: dict
  kind: str = flax.struct.field(pytree_node=False)
  static: tuple = flax.struct.field(pytree_node=False, default=())
  # The taps the term reads ("input", "logits" or layer names).
  taps: tuple = flax.struct.field(pytree_node=False, default=())


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
    return [t.weight * REGISTRY[t.kind](acts, *t.static, **t.args)
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

  def check(self, model, image_hw: tuple[int, int]) -> None:
    """Raises ValueError for an unknown layer or an out-of-range index."""
    for t in self.terms:
      checker = _CHECKS.get(t.kind)
      if checker is not None:
        checker(model, image_hw, *t.static, **t.args)
      w = t.weight
      if checks.is_concrete(w) and not np.all(np.isfinite(np.asarray(w))):
        raise ValueError(f"objective term {t.kind!r} has a non-finite weight {w!r}.")


def term(kind: str, *static, taps: tuple = (), weight: float = 1.0,
         **args) -> Objective:
  """An objective of one registered term (for user extensions)."""
  if kind not in REGISTRY:
    raise ValueError(f"unknown objective term {kind!r}; registered: "
                     f"{', '.join(sorted(REGISTRY))}.")
  return Objective((Term(weight=weight, args=args, kind=kind, static=static,
                         taps=tuple(taps)),))


def stack(objectives) -> Objective:
  """Stacks structurally identical objectives leaf-wise (a leading sweep axis)."""
  objectives = list(objectives)
  structs = {jax.tree_util.tree_structure(o) for o in objectives}
  if len(structs) != 1:
    raise ValueError("stack needs objectives that differ only in numbers "
                     "(same terms, layers and argument shapes).")
  return jax.tree_util.tree_map(lambda *x: jnp.stack([jnp.asarray(v) for v in x]),
                                *objectives)


# ----------------------------------------------------------------- checks

_CHECKS: dict[str, Callable] = {}


def _check_layer(model, hw, layer, channel=None):
  canon = model.resolve(layer)
  if channel is None:
    return canon
  shape = model.layer_shape(canon, hw)
  if checks.is_concrete(channel):
    c = np.asarray(channel)
    if c.dtype.kind not in "iu":
      raise ValueError(f"channel index for {layer!r} must be an integer; got "
                       f"dtype {c.dtype}.")
    if c.size and (c.min() < 0 or c.max() >= shape[-1]):
      raise ValueError(f"channel {c.tolist()} out of range for layer {layer!r} "
                       f"with {shape[-1]} channels (valid 0..{shape[-1] - 1}).")
  return shape


def _check_channel(model, hw, layer, channel):
  _check_layer(model, hw, layer, channel)


def _check_neuron(model, hw, layer, channel, y, x):
  shape = _check_layer(model, hw, layer, channel)
  if len(shape) == 1:
    return
  for name, v, n in (("y", y, shape[0]), ("x", x, shape[1])):
    if checks.is_concrete(v):
      a = np.asarray(v)
      if a.size and (a.min() < 0 or a.max() >= n):
        raise ValueError(f"neuron position {name}={a.tolist()} out of range for "
                         f"layer {layer!r} of spatial size {shape[:2]} at input "
                         f"{hw[0]}x{hw[1]}.")


def _check_class(model, hw, target):
  checks.check_classes(target, model.num_classes, name="class index")


def _check_plain_layer(model, hw, layer, *rest, **kw):
  model.resolve(layer)


def _check_match(model, hw, layer, target):
  shape = model.layer_shape(model.resolve(layer), hw)
  if tuple(target.shape[1:]) != tuple(shape):
    raise ValueError(f"feature target for {layer!r} has shape "
                     f"{tuple(target.shape)}; expected [N, {', '.join(map(str, shape))}] "
                     f"for input {hw[0]}x{hw[1]}.")


# ------------------------------------------------------------------ terms

def _per_image(index: Array, n: int) -> Array:
  return jnp.broadcast_to(jnp.asarray(index, jnp.int32), (n,))


def _pick(x: Array, index: Array) -> Array:
  """x[i, index[i]] along the last axis, for x `[N, ..., C]`."""
  idx = _per_image(index, x.shape[0]).reshape((-1,) + (1,) * (x.ndim - 1))
  return jnp.take_along_axis(x, idx, axis=-1)[..., 0]


@register("class_logit")
def _class_logit(acts, target):
  return _pick(acts["logits"], target)


@register("class_prob")
def _class_prob(acts, log, target):
  logp = jax.nn.log_softmax(acts["logits"], axis=-1)
  v = _pick(logp, target)
  return v if log else jnp.exp(v)


@register("channel")
def _channel(acts, layer, channel):
  a = _pick(acts[layer], channel)
  return a.reshape(a.shape[0], -1).mean(axis=1)


@register("neuron")
def _neuron(acts, layer, channel, y, x):
  a = acts[layer]
  if a.ndim == 2:
    return _pick(a, channel)
  n = a.shape[0]
  rows = jnp.arange(n)
  return a[rows, _per_image(y, n), _per_image(x, n), _per_image(channel, n)]


@register("layer_l2")
def _layer_l2(acts, layer):
  # Mean of a^2 / 2: its gradient w.r.t. the activation is the activation
  # itself (DeepDream, Mordvintsev et al. 2015), divided by the layer size.
  a = acts[layer]
  return 0.5 * jnp.mean(jnp.square(a).reshape(a.shape[0], -1), axis=1)


@register("feature_match")
def _feature_match(acts, layer, target):
  # Mahendran & Vedaldi 2015, eq. (2): ||phi(x) - phi0||^2 / ||phi0||^2,
  # negated because objectives are maximized.
  a = acts[layer].reshape(acts[layer].shape[0], -1)
  t = target.reshape(target.shape[0], -1)
  return -jnp.sum(jnp.square(a - t), axis=1) / (jnp.sum(jnp.square(t), axis=1) + 1e-8)


@register("diversity")
def _diversity(acts, layer):
  # Lucid's diversity: minus the mean cosine similarity between the Gram
  # matrices of the images of the batch (Mordvintsev et al. 2018, Distill).
  a = acts[layer]
  n = a.shape[0]
  flat = a.reshape(n, -1, a.shape[-1])
  gram = jnp.einsum("npc,npd->ncd", flat, flat).reshape(n, -1)
  gram = gram / (jnp.linalg.norm(gram, axis=1, keepdims=True) + 1e-8)
  sim = gram @ gram.T
  off = sim - jnp.diag(jnp.diag(sim))
  return -jnp.sum(off, axis=1) / max(n - 1, 1)


_CHECKS.update(class_logit=_check_class,
               class_prob=lambda m, hw, log, target: _check_class(m, hw, target),
               channel=_check_channel, neuron=_check_neuron,
               layer_l2=_check_plain_layer, diversity=_check_plain_layer,
               feature_match=_check_match)


# --------------------------------------------------------------- factories

def class_logit(target) -> Objective:
  """Unnormalized class score (Simonyan et al. 2014). target: int or `[N]`."""
  return term("class_logit", taps=("logits",), target=target)


def class_prob(target, log: bool = False) -> Objective:
  """Softmax probability (or log-probability) of `target` (int or `[N]`)."""
  return term("class_prob", bool(log), taps=("logits",), target=target)


def channel(layer: str, index) -> Objective:
  """Mean activation of channel `index` (int or `[N]`) of `layer`."""
  return term("channel", layer, taps=(layer,), channel=index)


def neuron(layer: str, index, y=None, x=None) -> Objective:
  """One unit: `layer[:, y, x, index]`; y, x default to the center (resolved by
  `optimize`, which knows the image size). Fully connected layers ignore y, x."""
  return term("neuron", layer, taps=(layer,), channel=index,
              y=-1 if y is None else y, x=-1 if x is None else x)


def layer_l2(layer: str) -> Objective:
  """Half the mean squared activation of `layer` (DeepDream)."""
  return term("layer_l2", layer, taps=(layer,))


def feature_match(layer: str, target: Array) -> Objective:
  """Minus the normalized squared distance to `target` `[N, ...]` (inversion)."""
  return term("feature_match", layer, taps=(layer,), target=jnp.asarray(target))


def diversity(layer: str) -> Objective:
  """Minus the mean Gram cosine similarity to the other images of the batch."""
  return term("diversity", layer, taps=(layer,))


def resolve(objective: Objective, model, image_hw: tuple[int, int]) -> Objective:
  """Validates `objective` for `model` at `image_hw` and fills defaults
  (canonical layer names; neuron positions at the center)."""
  if not isinstance(objective, Objective):
    raise ValueError(f"objective must be an Objective; got {type(objective).__name__}.")
  if not objective.terms:
    raise ValueError("objective has no terms.")
  terms = []
  for t in objective.terms:
    static, taps = t.static, t.taps
    if t.kind in ("channel", "neuron", "layer_l2", "feature_match", "diversity"):
      layer = model.resolve(static[0])
      static = (layer,) + static[1:]
      taps = (layer,)
    args = dict(t.args)
    if t.kind == "neuron":
      shape = model.layer_shape(static[0], image_hw)
      if len(shape) == 3:
        for k, n in (("y", shape[0]), ("x", shape[1])):
          if checks.is_concrete(args[k]) and np.all(np.asarray(args[k]) == -1):
            args[k] = n // 2
    terms.append(t.replace(static=static, taps=taps, args=args))
  out = Objective(tuple(terms))
  out.check(model, image_hw)
  return out
