"""Any Flax module or JAX function as a model that every technique accepts.

    net = MyResNet(num_classes=10)                       # the user's module
    variables = net.init(key, jnp.zeros((1, 32, 32, 3)))  # or trained ones
    model = models.from_flax(net, variables, name="mine", input_size=(32, 32))
    grads = attribution.saliency(model, images, labels)
    cam = attribution.grad_cam(model, images, labels, layer="stage3/block1")

A wrapped model has the interface of `Model` (`params`, `apply(params, images,
*, taps, relu, logits)`, `resolve`, `layer_shape`, `layer_names`, ...). Its
taps are

* for a Flax module, the paths of its submodules (`layer4/1/conv2`), read
  with Flax's `capture_intermediates`. A submodule called k > 1 times (a
  reused ReLU) has taps `path:0` ... `path:{k-1}`, and `path` is its last
  call. torchvision-style dotted paths (`layer4.1.conv2`) are accepted;
* for a plain function, the names its `taps_fn` returns.

Nothing in the user's code changes: gradients at a tap (Grad-CAM) add a zero
perturbation where the traced program computes the tap, and `relu=` (guided
backprop, deconvnet) rewrites the ReLUs of the traced program
(`models.rewrite`, which also lists what it cannot rewrite).
"""

from typing import Any, Callable, Mapping, Optional, Sequence

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from cnnviz_jax import _checks as checks
from cnnviz_jax.models import core, rewrite

Array = jax.Array

# The smallest input side checked at entry when the caller does not say: the
# same default as `Model` (five stride-2 stages of an ImageNet CNN leave 1x1).
_DEFAULT_MIN_SIZE = 32
# How far `apply_from` searches around its first guess of the input size: more
# than the total stride of common CNNs (32).
_SIZE_SEARCH = 48


@flax.struct.dataclass
class WrappedModel(core.TapLookup):
  """A user network behind the `Model` interface.

  Attributes:
    params: the network's variables (a Flax module's full `variables` dict, or
      the function's parameter pytree); techniques differentiate through it
      and replace it (`model.replace(params=...)`).
    name: a name for messages and files.
    forward: `forward(params, x, taps) -> (logits, {tap: activation})` on
      normalized input `x`, `taps` a tuple of canonical tap names.
    layer_names: canonical tap names, in the order the program finishes them
      (a submodule after its children).
    tap_shapes: `(name, shape for one image at input_size)` pairs.
    aliases: `(alias, canonical name)` pairs (dotted paths, last calls).
    class_names, input_size, mean, std, min_size: as in `Model`.
  """
  params: Any
  name: str = flax.struct.field(pytree_node=False)
  forward: Callable = flax.struct.field(pytree_node=False)
  layer_names: tuple = flax.struct.field(pytree_node=False)
  tap_shapes: tuple = flax.struct.field(pytree_node=False)
  aliases_: tuple = flax.struct.field(pytree_node=False)
  class_names: tuple = flax.struct.field(pytree_node=False)
  input_size: tuple = flax.struct.field(pytree_node=False)
  mean: tuple = flax.struct.field(pytree_node=False)
  std: tuple = flax.struct.field(pytree_node=False)
  min_size: int = flax.struct.field(pytree_node=False,
                                    default=_DEFAULT_MIN_SIZE)
  TAP_WORD = "tap"

  @property
  def aliases(self) -> dict[str, str]:
    """Alias (dotted path, or the path of a reused submodule) -> canonical."""
    return dict(self.aliases_)


  def layer_shape(self, tap: str, image_hw: Optional[tuple[int, int]] = None):
    """Activation shape of `tap` for one image (`[H', W', C]` or `[C]`)."""
    hw = tuple(image_hw or self.input_size)
    if hw == tuple(self.input_size):
      return dict(self.tap_shapes)[self.resolve(tap)]
    x = jax.ShapeDtypeStruct((1, *hw, 3), jnp.float32)
    _, acts = jax.eval_shape(
        lambda p, x: self.apply(p, x, taps=(tap,), logits=False), self.params, x)
    return tuple(acts[tap].shape[1:])

  def normalize(self, images: Array) -> Array:
    return (images - jnp.asarray(self.mean, images.dtype)) / jnp.asarray(
        self.std, images.dtype)

  def apply(self, params, images: Array, *, taps: Sequence[str] = (),
            relu: Callable = jax.nn.relu, logits: bool = True,
            perturb: Optional[Mapping[str, Array]] = None):
    """Runs the network.

    Args:
      params: variables of this network (`model.params` or a modified copy).
      images: float32 `[N, H, W, 3]` RGB in [0, 1]; normalized inside.
      taps: tap names (see `layer_names`, `aliases`) to return.
      relu: the function computing every ReLU of the program (guided backprop
        passes a `custom_vjp`); anything but `jax.nn.relu` rewrites the traced
        program (`models.rewrite`), and raises ValueError if it has no ReLU.
      logits: when False the first return value is None (the whole network
        still runs: a general program has no "stop after this tap").
      perturb: `{tap: delta}` added where the program computes each tap
        (`delta` shaped as the activation); `d out / d delta` is the gradient
        at the tap.

    Returns:
      `(logits [N, classes] or None, {tap: activation})`.
    """
    if isinstance(taps, str):
      taps = (taps,)
    if not isinstance(taps, (tuple, list)) or not all(
        isinstance(t, str) for t in taps):
      raise ValueError("taps must be a tap name or a tuple of tap names (() "
                       f"for none); got {taps!r}.")
    checks.check_images(images, min_size=self.min_size)
    if not logits and not taps:
      raise ValueError("logits=False needs at least one tap to compute.")
    perturb = {self.resolve(k): v for k, v in (perturb or {}).items()}
    canon = tuple(dict.fromkeys([self.resolve(t) for t in taps] + list(perturb)))
    what = f"model {self.name}"
    fn = lambda p, x: self.forward(p, x, canon)  # noqa: E731
    out, acts = rewrite.transform(
        fn, (params, self.normalize(images)),
        relu=None if relu is jax.nn.relu else relu, perturb=perturb, what=what,
        relu_name=getattr(relu, "__name__", "the ReLU rule"))
    return (out if logits else None), {t: acts[self.resolve(t)] for t in taps}

  def apply_from(self, params, acts: Array, start: str, *,
                 taps: Sequence[str] = (), relu: Callable = jax.nn.relu,
                 logits: bool = True):
    """Runs the part of the program after tap `start` on `acts`, its value
    (Grad-CAM's gradients w.r.t. a layer), as `Model.apply_from`.

    The program is cut at `start`: only what the outputs need given `acts`
    runs. `start` must be a cut (a stage or block output, or a layer with no
    skip connection around it); otherwise ValueError says so.

    Args:
      params: variables of this network.
      acts: the activation of `start`, `[N, h, w, C]` or `[N, C]`.
      start: a tap name.
      taps: taps to return: `start` itself or taps computed from it.
      relu, logits: as `apply`.

    Returns:
      `(logits or None, {tap: activation})`.
    """
    if isinstance(taps, str):
      taps = (taps,)
    if not logits and not taps:
      raise ValueError("logits=False needs at least one tap to compute.")
    start = self.resolve(start)
    canon = tuple(dict.fromkeys([start] + [self.resolve(t) for t in taps]))
    hw = self._image_size_for(start, tuple(acts.shape[1:]))
    x = jax.ShapeDtypeStruct((acts.shape[0], *hw, 3), jnp.float32)
    out, got = rewrite.tail(
        lambda p, x: self.forward(p, x, canon), (params, x), start, acts,
        cut_arg=1, relu=None if relu is jax.nn.relu else relu,
        what=f"model {self.name}",
        relu_name=getattr(relu, "__name__", "the ReLU rule"))
    return (out if logits else None), {t: got[self.resolve(t)] for t in taps}

  def _image_size_for(self, tap: str, shape: tuple) -> tuple[int, int]:
    """An input size `(H, W)` at which `tap` has activations `shape` (the cut
    program's shapes depend only on them)."""
    ref = dict(self.tap_shapes)[tap]
    if len(shape) != len(ref) or shape[-1] != ref[-1]:
      raise ValueError(f"activation of shape {shape} does not fit tap {tap!r} "
                       f"of {self.name} (shape {ref} at {self.input_size}).")
    if len(ref) != 3 or tuple(shape) == tuple(ref):
      return tuple(self.input_size)
    # Strided networks: scale by the tap's stride, then step to an exact fit.
    guess = [max(self.min_size, round(s * i / r))
             for s, i, r in zip(shape[:2], self.input_size, ref[:2])]
    # Each spatial axis is searched on its own (CNN shapes are separable),
    # over a window wider than any stride.
    hw = list(guess)
    for axis in (0, 1):
      for step in range(_SIZE_SEARCH):
        for sign in ((1, -1) if step else (1,)):
          trial = list(hw)
          trial[axis] = max(self.min_size, guess[axis] + sign * step)
          try:
            got = self.layer_shape(tap, tuple(trial))
          except ValueError:
            continue
          if got[axis] == shape[axis]:
            hw = trial
            break
        else:
          continue
        break
      else:
        raise ValueError(f"no input size gives tap {tap!r} of {self.name} the "
                         f"spatial size {shape[:2]}.")
    return tuple(hw)

  def __call__(self, images: Array, **kwargs):
    """`apply` with this model's own parameters."""
    return self.apply(self.params, images, **kwargs)


def _check_metadata(mean, std, input_size) -> None:
  for what, v in (("mean", mean), ("std", std)):
    if len(tuple(v)) != 3:
      raise ValueError(f"{what} must have 3 values (RGB); got {v!r}.")
  if min(tuple(std)) <= 0:
    raise ValueError(f"std must be positive; got {std!r}.")
  if len(tuple(input_size)) != 2 or min(input_size) < 1:
    raise ValueError(f"input_size must be (H, W) of positive ints; got "
                     f"{input_size!r}.")


def _build(name, forward, params, class_names, input_size, mean, std, min_size,
           layer_names, aliases, shapes, logits):
  """The model, once the taps' `shapes` (at input_size) and the abstract
  `logits` are known."""
  if getattr(logits, "ndim", 0) != 2:
    raise ValueError(f"{name} must return logits [N, classes]; got "
                     f"{getattr(logits, 'shape', type(logits).__name__)}.")
  n = logits.shape[-1]
  if class_names is None:
    class_names = tuple(f"class_{i}" for i in range(n))
  if len(class_names) != n:
    raise ValueError(f"{len(class_names)} class names for {n} outputs.")
  return WrappedModel(
      params=params, name=name, forward=forward, layer_names=layer_names,
      tap_shapes=tuple((k, tuple(shapes[k])) for k in layer_names),
      aliases_=tuple(aliases), class_names=tuple(class_names),
      input_size=tuple(input_size), mean=tuple(mean), std=tuple(std),
      min_size=int(min_size))


def from_flax(module: nn.Module, variables, *, name: str,
              class_names: Optional[Sequence[str]] = None,
              mean: Sequence[float] = (0.0, 0.0, 0.0),
              std: Sequence[float] = (1.0, 1.0, 1.0),
              input_size: tuple[int, int] = (224, 224),
              min_size: int = _DEFAULT_MIN_SIZE,
              method: Optional[str] = None,
              apply_kwargs: Optional[Mapping[str, Any]] = None) -> WrappedModel:
  """Wraps a Flax module (inference mode) for every technique.

  Args:
    module: a `flax.linen.Module` mapping NHWC images `[N, H, W, 3]`
      (normalized by `mean`, `std`) to logits `[N, classes]`. BatchNorm must
      use running averages and dropout be deterministic (e.g. through
      `apply_kwargs={"train": False}`).
    variables: its variables, e.g. `{"params": ..., "batch_stats": ...}`.
    name: a name for messages.
    class_names: one per output (default `class_0`, ...).
    mean, std: per-channel RGB normalization applied to [0, 1] images before
      the module (default: none).
    input_size: the resolution it was trained at `(H, W)`; other sizes work.
    min_size: the smallest input side accepted.
    method: the module method to call (default `__call__`).
    apply_kwargs: extra keyword arguments of every call (e.g. `train=False`).

  Returns:
    A `WrappedModel`; its taps are the submodule paths.
  """
  if not isinstance(module, nn.Module):
    raise ValueError(f"from_flax needs a flax.linen.Module; got "
                     f"{type(module).__name__} (use from_function for a plain "
                     "function).")
  _check_metadata(mean, std, input_size)
  kwargs = dict(apply_kwargs or {})

  def forward(variables, x, taps):
    # Internal keys are `path:call`; a canonical tap `path` is call 0.
    keys = {t: t if ":" in t else f"{t}:0" for t in taps}
    paths = {k.rpartition(":")[0] for k in keys.values()}

    def wanted(mdl, method_name):
      return method_name == "__call__" and "/".join(mdl.path) in paths
    out, state = module.apply(variables, x, method=method,
                              capture_intermediates=wanted if taps else False,
                              mutable=["intermediates"], **kwargs)
    inter = flax.traverse_util.flatten_dict(
        flax.core.unfreeze(state.get("intermediates", {})), sep="/")
    acts = {}
    for t, k in keys.items():
      path, _, i = k.rpartition(":")
      acts[t] = inter[f"{path}/__call__"][int(i)]
    return out, acts

  calls, logits = _flax_calls(module, variables, input_size, method, kwargs)
  names, aliases, shapes = [], [], {}
  for path, vals in calls:
    if len(vals) == 1:
      names.append(path)
      shapes[path] = vals[0].shape[1:]
    else:
      names += [f"{path}:{i}" for i in range(len(vals))]
      shapes.update({f"{path}:{i}": v.shape[1:] for i, v in enumerate(vals)})
      aliases.append((path, f"{path}:{len(vals) - 1}"))
  for n in list(names) + [a for a, _ in aliases]:
    dotted = n.replace("/", ".")
    if dotted != n:
      aliases.append((dotted, dict(aliases).get(n, n)))
  return _build(name, forward, variables, class_names, input_size, mean, std,
                min_size, tuple(names), aliases, shapes, logits)


def _flax_calls(module, variables, input_size, method, kwargs):
  """`([(submodule path, abstract outputs of its calls)], abstract logits)`
  from Flax's `capture_intermediates` on an abstract input, array-valued
  outputs only, in the order the first calls finish (a submodule after its
  children)."""
  x = jax.ShapeDtypeStruct((1, *input_size, 3), jnp.float32)
  order = []

  def record(next_fun, args, kw, context):
    out = next_fun(*args, **kw)
    if context.method_name == "__call__":
      order.append("/".join(context.module.path))
    return out

  def run(v, x):
    with nn.intercept_methods(record):
      return module.apply(v, x, method=method, capture_intermediates=True,
                          mutable=["intermediates"], **kwargs)
  logits, state = jax.eval_shape(run, variables, x)
  flat = flax.traverse_util.flatten_dict(
      flax.core.unfreeze(state.get("intermediates", {})), sep="/")
  calls = {}
  for key, vals in flat.items():
    path, _, meth = key.rpartition("/")
    # The top module's own output is the logits, not a tap.
    if meth == "__call__" and path and all(
        isinstance(v, jax.ShapeDtypeStruct) for v in vals):
      calls[path] = tuple(vals)
  first = {p: i for i, p in reversed(list(enumerate(order)))}
  return sorted(calls.items(), key=lambda pc: first.get(pc[0], len(order))), logits


def from_function(apply_fn: Callable, params, *,
                  taps_fn: Optional[Callable] = None, name: str = "function",
                  class_names: Optional[Sequence[str]] = None,
                  mean: Sequence[float] = (0.0, 0.0, 0.0),
                  std: Sequence[float] = (1.0, 1.0, 1.0),
                  input_size: tuple[int, int] = (224, 224),
                  min_size: int = _DEFAULT_MIN_SIZE) -> WrappedModel:
  """Wraps a plain JAX function for every technique.

  Args:
    apply_fn: `apply_fn(params, images) -> logits [N, classes]`, images NHWC
      normalized by `mean`, `std`.
    params: its parameter pytree.
    taps_fn: optional `taps_fn(params, images) -> (logits, {name: activation})`
      computing logits and named intermediates in one pass (the same
      network as `apply_fn`); without it the model has no taps (saliency,
      integrated gradients, occlusion, class visualization still work).
    name, class_names, mean, std, input_size, min_size: as in `from_flax`.

  Returns:
    A `WrappedModel` whose taps are the names `taps_fn` returns.
  """
  if not callable(apply_fn) or (taps_fn is not None and not callable(taps_fn)):
    raise ValueError("apply_fn and taps_fn must be functions "
                     "(params, images) -> logits / (logits, {name: array}).")

  def forward(p, x, taps):
    if not taps:
      return apply_fn(p, x), {}
    out, acts = taps_fn(p, x)
    return out, {t: acts[t] for t in taps}

  _check_metadata(mean, std, input_size)
  x = jax.ShapeDtypeStruct((1, *input_size, 3), jnp.float32)
  if taps_fn is None:
    logits, acts = jax.eval_shape(apply_fn, params, x), {}
  else:
    logits, acts = jax.eval_shape(taps_fn, params, x)
    if not isinstance(acts, Mapping):
      raise ValueError("taps_fn must return (logits, {name: activation}); got "
                       f"{type(acts).__name__} as the second value.")
  return _build(name, forward, params, class_names, input_size, mean, std,
                min_size, tuple(acts), (), {k: v.shape[1:] for k, v in acts.items()},
                logits)
