"""Program rewrites of any JAX function: ReLU rules and perturbations at taps.

A wrapped model (`from_flax`, `from_function`) is an arbitrary JAX function,
so the two things attribution needs from a network are done on its traced
program (its jaxpr) instead of asking the user's code for hooks:

* `relu`: every ReLU is evaluated by a given function, e.g. the guided or the
  deconvnet ReLU (a `custom_vjp`). A ReLU is an equation
  `custom_jvp_call[name=relu]` (`jax.nn.relu`, `flax.linen.relu`) or
  `max(x, 0)` with a literal zero (`jnp.maximum(x, 0)`, `jnp.clip(x, 0)`).
  Captum does this with backward hooks on `nn.ReLU` modules, which break on
  in-place and reused modules; a rewrite of the program has neither problem.
* `perturb`: `delta` is added to a tap where the program computes it, so that
  every later use sees `tap + delta` and `d out / d delta` is the gradient at
  the tap (Grad-CAM), as Flax's `perturb` does without editing the module.

What is rewritten: the top-level program and, recursively, `jit`, `remat`
(`jax.checkpoint`, inlined: same values and gradients, without the memory
saving), `lax.scan`, `lax.cond`/`switch` and `lax.while_loop` bodies.

What cannot be rewritten (a ValueError names the place when it holds a ReLU,
so that no method silently runs with the vanilla gradient there):
* ReLUs inside other `custom_jvp`/`custom_vjp` functions (user-defined ones,
  `jax.nn.relu6`): their custom rule would be lost;
* ReLUs inside other higher-order primitives (`shard_map`, `custom_linear_solve`,
  callbacks).
Not recognized as ReLUs, hence left as they are: `jnp.where(x > 0, x, 0)`,
`x * (x > 0)`, `leaky_relu`, `gelu`, `silu`, `elu`. Conversely every
`max(x, 0)` counts as a ReLU, including a clamp such as `jnp.maximum(var, 0)`
in hand-written normalization.
"""

from typing import Callable, Mapping, Optional

import jax
from jax import lax
import jax.extend.core as jcore

Array = jax.Array

# Primitives that only group equations: their body is evaluated inline.
_INLINE = {"jit": "jaxpr", "pjit": "jaxpr", "closed_call": "call_jaxpr",
           "core_call": "call_jaxpr", "remat2": "jaxpr", "checkpoint": "jaxpr"}
_CONTROL = ("scan", "cond", "while")


def _is_max0(eqn) -> bool:
  """`max(x, 0)` (either order) with a literal zero, on floats."""
  if eqn.primitive.name != "max" or len(eqn.invars) != 2:
    return False
  a, b = eqn.invars
  for lit, var in ((a, b), (b, a)):
    if (isinstance(lit, jcore.Literal) and not isinstance(var, jcore.Literal)
        and jax.numpy.issubdtype(var.aval.dtype, jax.numpy.floating)
        and var.aval.shape == eqn.outvars[0].aval.shape):
      try:
        return float(lit.val) == 0.0
      except (TypeError, ValueError):
        return False
  return False


def _is_relu_body(jaxpr) -> bool:
  """One equation: `max(x, 0)`, or a `jit` whose body is one (`jax.nn.relu`)."""
  if len(jaxpr.eqns) != 1:
    return False
  eqn = jaxpr.eqns[0]
  if eqn.primitive.name in _INLINE:
    sub = eqn.params[_INLINE[eqn.primitive.name]]
    return _is_relu_body(getattr(sub, "jaxpr", sub))
  return _is_max0(eqn) and eqn.invars[0 if isinstance(eqn.invars[1], jcore.Literal)
                                      else 1] in jaxpr.invars


def _is_relu(eqn) -> bool:
  """`jax.nn.relu` (a `custom_jvp_call` whose forward is `max(x, 0)`) or a
  bare `max(x, 0)`."""
  if eqn.primitive.name == "custom_jvp_call":
    return len(eqn.invars) == 1 and _is_relu_body(eqn.params["call_jaxpr"].jaxpr)
  return _is_max0(eqn)


def _sub_jaxprs(eqn):
  """(name, open jaxpr) of every sub-program of `eqn`."""
  for key, val in eqn.params.items():
    for v in (val if isinstance(val, (tuple, list)) else (val,)):
      if isinstance(v, jcore.ClosedJaxpr):
        yield key, v.jaxpr
      elif isinstance(v, jcore.Jaxpr):
        yield key, v


def survey(jaxpr, where: str = "") -> tuple[int, list[str]]:
  """Counts the rewritable ReLUs of `jaxpr` and lists the places (primitive
  names) holding ReLUs that cannot be rewritten."""
  count, blocked = 0, []
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if _is_relu(eqn):
      count += 1
      continue
    for _, sub in _sub_jaxprs(eqn):
      n, b = survey(sub, f"{where}{name}/")
      if name in _INLINE or name in _CONTROL:
        count, blocked = count + n, blocked + b
      elif n or b:
        label = eqn.params.get("name", "")
        blocked.append(f"{where}{name}" + (f"[name={label}]" if label else ""))
  return count, blocked


def _read(env, v):
  return v.val if isinstance(v, jcore.Literal) else env[v]


def _eval(jaxpr, consts, args, relu, perturb: Mapping,
          replace: Optional[Mapping] = None, live: Optional[list] = None):
  """`jax.core.eval_jaxpr` with ReLUs replaced by `relu`, `perturb[var]` added
  to `var` right where it is defined, `replace[var]` standing for `var`, and
  only the equations flagged in `live` evaluated (default: all)."""
  env = {}
  replace = replace or {}

  def write(v, val):
    if v in replace:
      val = replace[v]
    elif v in perturb:
      val = val + perturb[v]
    env[v] = val

  for v, val in zip(jaxpr.constvars, consts):
    write(v, val)
  for v, val in zip(jaxpr.invars, args):
    write(v, val)
  for v, val in replace.items():
    env[v] = val
  for i, eqn in enumerate(jaxpr.eqns):
    if live is not None and not live[i]:
      continue
    invals = [_read(env, v) for v in eqn.invars]
    name = eqn.primitive.name
    nested = relu is not None and any(survey(s)[0] for _, s in _sub_jaxprs(eqn))
    if relu is not None and _is_relu(eqn):
      x = invals[1] if isinstance(eqn.invars[0], jcore.Literal) else invals[0]
      outs = [relu(x)]
    elif nested and name in _INLINE:
      sub = eqn.params[_INLINE[name]]
      closed = sub if isinstance(sub, jcore.ClosedJaxpr) else jcore.ClosedJaxpr(sub, ())
      outs = _eval(closed.jaxpr, closed.consts, invals, relu, {})
    elif nested and name in _CONTROL:
      outs = _control(eqn, invals, relu)
    else:
      with eqn.ctx.manager:
        ans = eqn.primitive.bind(*invals,
                                 **eqn.primitive.get_bind_params(eqn.params))
      outs = ans if eqn.primitive.multiple_results else [ans]
    for v, val in zip(eqn.outvars, outs):
      write(v, val)
  return [_read(env, v) for v in jaxpr.outvars]


def _closed_fn(closed, relu):
  return lambda *a: _eval(closed.jaxpr, closed.consts, a, relu, {})


def _control(eqn, invals, relu):
  """Re-expresses scan/cond/while with rewritten bodies."""
  p = eqn.params
  name = eqn.primitive.name
  if name == "scan":
    nc, nk = p["num_consts"], p["num_carry"]
    consts, carry, xs = invals[:nc], invals[nc:nc + nk], invals[nc + nk:]
    body = _closed_fn(p["jaxpr"], relu)

    def step(c, x):
      out = body(*consts, *c, *x)
      return list(out[:nk]), list(out[nk:])
    carry, ys = lax.scan(step, list(carry), list(xs), length=p["length"],
                         reverse=p["reverse"], unroll=p["unroll"])
    return [*carry, *ys]
  if name == "cond":
    branches = [_closed_fn(b, relu) for b in p["branches"]]
    return lax.switch(invals[0], branches, *invals[1:])
  cn, bn = p["cond_nconsts"], p["body_nconsts"]
  cconsts, bconsts, init = invals[:cn], invals[cn:cn + bn], invals[cn + bn:]
  cond = _closed_fn(p["cond_jaxpr"], None)
  body = _closed_fn(p["body_jaxpr"], relu)
  return list(lax.while_loop(lambda s: cond(*cconsts, *s)[0],
                             lambda s: list(body(*bconsts, *s)), list(init)))


def _check_relus(jaxpr, what: str, relu_name: str) -> None:
  """ValueError unless `jaxpr` has ReLUs, all of them rewritable."""
  count, blocked = survey(jaxpr)
  if blocked:
    raise ValueError(
        f"{what} computes ReLUs inside {', '.join(sorted(set(blocked)))}, "
        f"which cannot be rewritten for {relu_name} (their own gradient rule "
        "would be lost); use jax.nn.relu outside custom_jvp/custom_vjp.")
  if count == 0:
    raise ValueError(
        f"{what} has no ReLU for {relu_name}: its program holds no "
        "jax.nn.relu / flax.linen.relu call and no max(x, 0). Guided backprop"
        " and deconvnet are defined through ReLUs; use saliency, "
        "integrated_gradients or smoothgrad for this model.")


def transform(fn: Callable, args: tuple, *, relu: Optional[Callable] = None,
              perturb: Optional[Mapping[str, Array]] = None,
              what: str = "the model", relu_name: str = "the ReLU rule"):
  """Evaluates `fn(*args) -> (out, {tap: array})` with its program rewritten.

  Args:
    fn: any JAX-traceable function returning `(out, taps dict)`.
    args: its arguments (pytrees).
    relu: the function that computes every ReLU (None: leave them).
    perturb: `{tap: delta}` added where each tap is computed (shapes as the
      taps); keys must be keys of the taps dict.
    what: how errors name the program (e.g. the model's name).
    relu_name: how errors name the rule (e.g. "guided backprop").

  Returns:
    `(out, taps)` as `fn` returns them, with the rewrites applied.

  Raises:
    ValueError: `relu` is given but the program has no ReLU, or holds ReLUs
      where they cannot be rewritten (see the module docstring).
  """
  perturb = dict(perturb or {})
  if relu is None and not perturb:
    return fn(*args)
  flat, tree = jax.tree_util.tree_flatten(args)
  closed, shape = jax.make_jaxpr(lambda *f: fn(*tree.unflatten(f)),
                                 return_shape=True)(*flat)
  if relu is not None:
    _check_relus(closed.jaxpr, what, relu_name)
  out_tree = jax.tree_util.tree_structure(shape)
  tap_dict = shape[1]
  unknown = set(perturb) - set(tap_dict)
  if unknown:
    raise ValueError(f"perturbations for {sorted(unknown)} which are not taps "
                     f"of this call ({sorted(tap_dict)}).")
  for tap, delta in perturb.items():
    if tuple(jax.numpy.shape(delta)) != tuple(tap_dict[tap].shape):
      raise ValueError(f"perturbation for tap {tap!r} has shape "
                       f"{tuple(jax.numpy.shape(delta))}; the tap is "
                       f"{tuple(tap_dict[tap].shape)}.")
  # The output positions of the taps tell which program variables they are.
  by_var = {}
  for tap, var in _tap_vars(closed, shape, set(perturb)).items():
    if isinstance(var, jcore.Literal):
      raise ValueError(f"tap {tap!r} of {what} is a constant; it has no "
                       "gradient.")
    # Taps that are one variable (a block's output and its last ReLU) add up.
    by_var[var] = by_var[var] + perturb[tap] if var in by_var else perturb[tap]
  outs = _eval(closed.jaxpr, closed.consts, flat, relu, by_var)
  return out_tree.unflatten(outs)


def _tap_vars(closed, shape, names) -> dict:
  """The program variables of the named taps of `fn -> (out, taps dict)`."""
  offset = len(jax.tree_util.tree_leaves(shape[0]))
  out = {}
  for i, (path, _) in enumerate(
      jax.tree_util.tree_flatten_with_path(shape[1])[0]):
    if path[0].key in names:
      out[path[0].key] = closed.jaxpr.outvars[offset + i]
  return out


def tail(fn: Callable, args: tuple, start: str, value: Array, *,
         cut_arg: int, relu: Optional[Callable] = None, what: str = "the model",
         relu_name: str = "the ReLU rule"):
  """Evaluates `fn(*args) -> (out, {tap: array})` from tap `start` onward:
  `value` stands for the tap, and only the part of the program after it runs.

  Args:
    fn: as in `transform`; its taps dict must hold `start`.
    args: its arguments; `args[cut_arg]` (the input image) only fixes shapes:
      the outputs must not depend on it except through `start`.
    start: the tap the program is cut at.
    value: its value, shaped as the tap.
    cut_arg: index of the argument that must not be read.
    relu, what, relu_name: as in `transform`.

  Returns:
    `(out, taps)` as `fn` returns them; `taps[start]` is `value`.

  Raises:
    ValueError: `start` is not a cut: a skip connection (or any other path)
      around it reaches the outputs; or for `relu` as in `transform`.
  """
  flat, tree = jax.tree_util.tree_flatten(args)
  closed, shape = jax.make_jaxpr(lambda *f: fn(*tree.unflatten(f)),
                                 return_shape=True)(*flat)
  if relu is not None:
    _check_relus(closed.jaxpr, what, relu_name)
  var = _tap_vars(closed, shape, {start})[start]
  if isinstance(var, jcore.Literal):
    raise ValueError(f"tap {start!r} of {what} is a constant.")
  jaxpr = closed.jaxpr
  needed = {v for v in jaxpr.outvars if not isinstance(v, jcore.Literal)}
  live_vars, live = set(needed), [False] * len(jaxpr.eqns)
  for i in reversed(range(len(jaxpr.eqns))):
    eqn = jaxpr.eqns[i]
    if any(o in live_vars and o is not var for o in eqn.outvars):
      live[i] = True
      live_vars.update(v for v in eqn.invars if not isinstance(v, jcore.Literal))
  lo = len(jax.tree_util.tree_leaves(args[:cut_arg]))
  hi = lo + len(jax.tree_util.tree_leaves(args[cut_arg]))
  if any(v in live_vars for v in jaxpr.invars[lo:hi]):
    raise ValueError(
        f"{what} cannot be run from tap {start!r} onward: the layers after it "
        "also read the input through another path (e.g. a skip connection "
        "around it), so its activation alone does not determine them. Use a "
        "tap that every path passes through, such as a stage or block output.")
  outs = _eval(jaxpr, closed.consts, flat, relu, {}, {var: value}, live)
  return jax.tree_util.tree_structure(shape).unflatten(outs)
