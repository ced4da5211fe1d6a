"""Sweeps: many settings of one synthesis problem as one vmapped, jitted
computation, sharded over every device along the sweep axis.

The devices are those of every process (`jax.devices()`): after
`jax.distributed.initialize`, one program per host runs `sweep` with the
same arguments (JAX's multi-controller model), each process places only the
sweep points of its own devices (`jax.make_array_from_callback`), and every
process gets the whole result (`multihost_utils.process_allgather`). A sweep
whose size does not divide the device count is padded with copies of its
last point, and the padding dropped from the result.
"""

import dataclasses
import functools
from typing import Any, Optional, Sequence

import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import numpy as np

from cnnviz_jax import _checks as checks
from cnnviz_jax.synthesis import engine

Array = jax.Array


def _has_bounds(x) -> bool:
  return bool(getattr(type(x), "sweep_bounds", ()))


def align_bounds(trees: Sequence[Any]) -> list:
  """Raises every static bound (a field named in a node's `sweep_bounds`,
  e.g. `Jitter.max_pixels`, `GaussianBlur.max_radius`) to its maximum over
  `trees`, so that points which differ only in traced numbers (jitter
  pixels, blur radius) get one structure. Bounds do not change a node's
  output, only the size of its padded arrays."""
  trees = list(trees)
  if len(trees) < 2:
    return trees
  bounded = [jax.tree_util.tree_flatten(t, is_leaf=_has_bounds)[0] for t in trees]
  if len({len(b) for b in bounded}) != 1:
    return trees  # different structures: `stack` reports where
  for i in range(len(bounded[0])):
    nodes = [b[i] for b in bounded]
    if not all(_has_bounds(n) and type(n) is type(nodes[0]) for n in nodes):
      continue
    widest = {f: max(getattr(n, f) for n in nodes) for f in type(nodes[0]).sweep_bounds}
    for b in bounded:
      b[i] = b[i].replace(**widest)
  return [jax.tree_util.tree_unflatten(
      jax.tree_util.tree_structure(t, is_leaf=_has_bounds), b)
          for t, b in zip(trees, bounded)]


def _static_fields(x) -> dict:
  if not dataclasses.is_dataclass(x):
    return {}
  return {f.name: getattr(x, f.name) for f in dataclasses.fields(x)
          if not f.metadata.get("pytree_node", True)}


def _first_difference(a, b, path: str) -> Optional[str]:
  """Where two sweep points differ in something that is not a traced number
  (a type, a static field, a tuple's length, a leaf's shape), or None."""
  if a is None or b is None:
    return None if a is b else f"{path}: {a!r} vs {b!r} (None in one point only)"
  if type(a) is not type(b):
    return f"{path}: {type(a).__name__} vs {type(b).__name__}"
  if isinstance(a, (tuple, list)):
    if len(a) != len(b):
      return f"{path}: {len(a)} vs {len(b)} entries"
    fields = [(f"{path}[{i}]", x, y) for i, (x, y) in enumerate(zip(a, b))]
    if hasattr(a, "_fields"):
      fields = [(f"{path}.{n}", x, y) for n, x, y in zip(a._fields, a, b)]
  elif isinstance(a, dict):
    if set(a) != set(b):
      return f"{path}: keys {sorted(a)} vs {sorted(b)}"
    fields = [(f"{path}[{k!r}]", a[k], b[k]) for k in a]
  elif dataclasses.is_dataclass(a):
    sa, sb = _static_fields(a), _static_fields(b)
    for k in sa:
      if not _equal(sa[k], sb[k]):
        return (f"{path}.{k}: {sa[k]!r} vs {sb[k]!r} (a static setting: it "
                "must be equal across the sweep)")
    fields = [(f"{path}.{f.name}", getattr(a, f.name), getattr(b, f.name))
              for f in dataclasses.fields(a) if f.name not in sa]
  else:
    sa, sb = np.shape(a), np.shape(b)
    return None if sa == sb else f"{path}: shape {sa} vs {sb}"
  for p, x, y in fields:
    d = _first_difference(x, y, p)
    if d is not None:
      return d
  return None


def _equal(a, b) -> bool:
  try:
    return bool(a == b)
  except Exception:  # pylint: disable=broad-except
    return a is b


def stack(trees: Sequence[Any]) -> Any:
  """Stacks pytrees leaf-wise (a leading sweep axis), after `align_bounds`.

  Raises:
    ValueError: naming the first place (e.g. `setup.objective.terms[1].kind`)
      where a point differs from the first in more than traced numbers.
  """
  trees = align_bounds(trees)
  if not trees:
    raise ValueError("nothing to stack.")
  first = jax.tree_util.tree_structure(trees[0])
  for i, t in enumerate(trees[1:], 1):
    leaves_ok = jax.tree_util.tree_structure(t) == first and all(
        np.shape(x) == np.shape(y) for x, y in zip(
            jax.tree_util.tree_leaves(trees[0]), jax.tree_util.tree_leaves(t)))
    if not leaves_ok:
      where = (_first_difference(trees[0], t, "setup")
               or f"structures {first} vs {jax.tree_util.tree_structure(t)}")
      raise ValueError(
          "sweep points must differ only in numbers (same terms, layers, "
          f"transforms and shapes); point {i} differs from point 0 at {where}.")
  return jax.tree_util.tree_map(
      lambda *x: jnp.stack([jnp.asarray(v, jnp.result_type(v)) for v in x]), *trees)


# The mesh axis the sweep points are split along.
SWEEP_AXIS = "sweep"


def sweep_mesh(devices=None) -> jax.sharding.Mesh:
  """A one-axis (`SWEEP_AXIS`) mesh over `devices` (default: every device
  of every process, `jax.devices()`)."""
  devices = list(devices if devices is not None else jax.devices())
  return jax.sharding.Mesh(np.array(devices), (SWEEP_AXIS,))


def padded_size(size: int, num_devices: int) -> int:
  """`size` rounded up to a multiple of `num_devices` (>= 1)."""
  if size < 1 or num_devices < 1:
    raise ValueError(f"padded_size needs size >= 1 and num_devices >= 1; got "
                     f"{size} and {num_devices}.")
  return -(-size // num_devices) * num_devices


def _place(x, sharding):
  """`x` (the same on every process) as a global array with `sharding`;
  each process copies only the slices of its own devices."""
  if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
    return jax.random.wrap_key_data(_place(jax.random.key_data(x), sharding),
                                    impl=jax.random.key_impl(x))
  host = np.asarray(x)
  return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


def shard_sweep_axis(tree: Any, size: int, devices=None) -> Any:
  """Places every leaf with leading axis `size` across `devices` (default:
  every device of every process) along that axis, so a jitted vmap over it
  runs data-parallel (GSPMD). Every process must pass the same `tree`; each
  builds only the shards of its own devices (`jax.make_array_from_callback`).

  A no-op on one device.

  Raises:
    ValueError: `size` is not a multiple of the device count (pad the sweep
      first: `padded_size`).
  """
  devices = list(devices if devices is not None else jax.devices())
  if len(devices) < 2:
    return tree
  if size % len(devices):
    raise ValueError(f"a sweep of {size} points cannot be split evenly over "
                     f"{len(devices)} devices; pad it to "
                     f"{padded_size(size, len(devices))} points first (`padded_size`).")
  sharded = jax.sharding.NamedSharding(
      sweep_mesh(devices), jax.sharding.PartitionSpec(SWEEP_AXIS))
  return jax.tree_util.tree_map(
      lambda x: _place(x, sharded)
      if getattr(x, "ndim", 0) >= 1 and x.shape[0] == size else x, tree)


def gather(tree: Any, size: Optional[int] = None) -> Any:
  """Every leaf's whole value on every process, its leading (sweep) axis cut
  to `size` (dropping padding; None: all of it).

  Leaves that span other processes' devices are gathered
  (`multihost_utils.process_allgather`, a collective: every process must
  call `gather` at the same point) and come back as numpy arrays; the
  others are only sliced.

  Raises:
    RuntimeError: the gather failed, most likely because another process
      died; the message names this process.
  """
  leaves = jax.tree_util.tree_leaves(tree)
  if any(isinstance(x, jax.Array) and not x.is_fully_addressable for x in leaves):
    try:
      tree = multihost_utils.process_allgather(tree, tiled=True)
    except jax.errors.JaxRuntimeError as e:
      raise RuntimeError(
          f"process {jax.process_index()} of {jax.process_count()}: gathering "
          "the sweep from the other processes failed; another process has "
          f"probably died or been stopped (see its log). Cause: {e}") from e
  if size is None:
    return tree
  return jax.tree_util.tree_map(
      lambda x: x[:size] if getattr(x, "ndim", 0) >= 1 and x.shape[0] > size else x,
      tree)


def _pad(tree: Any, size: int, padded: int) -> Any:
  """Repeats the last entry of every leaf's leading axis up to `padded`."""
  if padded == size:
    return tree
  return jax.tree_util.tree_map(
      lambda x: jnp.concatenate([x, jnp.repeat(x[-1:], padded - size, axis=0)]),
      tree)


@functools.partial(jax.jit, static_argnames=("optimizer", "sharding"))
def _init_states(param, keys, init, *, optimizer, sharding):
  # Jitted with sharded keys, so each device draws only its own points'
  # starting images (a sweep of large images never sits whole on one host).
  state = jax.vmap(lambda k: engine.init_state(param, optimizer, k, init))(keys)
  if sharding is not None:
    state = jax.lax.with_sharding_constraint(state, sharding)
  return state


@jax.jit
def _to_images(param, params):
  return jax.vmap(param.to_image)(params)


@functools.partial(jax.jit, static_argnames=engine.STATIC_ARGNAMES)
def _run_sweep(model, setups, param, state, keys, start, *, optimizer, num_steps,
               keep_best, unroll):
  fn = functools.partial(engine.run_steps, model, optimizer=optimizer,
                         num_steps=num_steps, keep_best=keep_best, unroll=unroll)
  return jax.vmap(lambda s, st, k: fn(s, param, st, k, start))(setups, state, keys)


@jax.jit
def _final_sweep(model, setups, param, state, keys, steps):
  return jax.vmap(lambda s, st, k: engine.final_params(model, s, param, st, k, steps))(
      setups, state, keys)


def sweep(model, setups: Sequence[engine.Setup], param, *, keys: Array, steps: int,
          optimizer="adam", init: Optional[Array] = None, keep_best: bool = False,
          chunk: Optional[int] = None, unroll: Optional[int] = None,
          progress=None) -> engine.Result:
  """Runs S setups as one vmapped, jitted computation.

  Any number in a `Setup` may vary (see `engine.Setup`): objective weights
  and targets, TV's beta, jitter/roll pixels, scale and rotation ranges, blur
  sigma, period and radius, clipping percentiles, projection radii, the
  learning rate (numbers or schedules); the seeds come from `keys`. Blur
  kernels and jitter pads take the sweep's largest size, each point masked to
  its own, so point `s` matches its own run up to float rounding.
  `synthesis.sweep` builds the setups from recipe dicts.

  Args:
    setups: S `Setup`s that differ only in numbers.
    keys: `[S]` PRNG keys (e.g. `jax.random.split(key, S)`).
    Other arguments as in `engine.optimize`.

  Returns:
    `Result` with a leading `[S]` axis. Point `s` equals
    `engine.optimize(model, setups[s], param, key=keys[s], ...)`.
    The S points are sharded over every device of every process, S padded
    to a multiple of the device count with copies of the last point (the
    copies are dropped). With several processes every process must call
    `sweep` with the same arguments, and every process gets the whole
    result as numpy arrays (the per-chunk histories that `progress` sees
    too).
  """
  setups = list(setups)
  if len(setups) < 1:
    raise ValueError("sweep needs at least one setup.")
  if len(keys) != len(setups):
    raise ValueError(f"sweep got {len(setups)} setups but {len(keys)} keys.")
  for k in keys:
    checks.check_key(k, "each of keys")
  setups = [engine.prepare(model, s, param, steps, chunk) for s in setups]
  tx = engine.as_optimizer(optimizer)
  devices = jax.devices()
  size = len(setups)
  padded = padded_size(size, len(devices))
  st = stack(setups + [setups[-1]] * (padded - size))
  split = jax.vmap(jax.random.split)(_pad(jnp.asarray(keys), size, padded))
  init_keys, loop_keys = split[:, 0], split[:, 1]
  st, init_keys, loop_keys = shard_sweep_axis((st, init_keys, loop_keys), padded,
                                              devices)
  sharding = None
  if len(devices) > 1:
    sharding = jax.sharding.NamedSharding(
        sweep_mesh(devices), jax.sharding.PartitionSpec(SWEEP_AXIS))
  state = _init_states(param, init_keys, init, optimizer=tx, sharding=sharding)

  def run_chunk(state, start, n):
    state, history = _run_sweep(model, st, param, state, loop_keys, jnp.int32(start),
                                optimizer=tx, num_steps=n, keep_best=keep_best,
                                unroll=unroll or n)
    # Gathered now (a collective every process reaches at the same chunk),
    # so that logging and `progress` only read local values: a collective
    # that one process starts on its own clock would hang the others.
    return state, gather(history, size)

  state, history = engine.drive(run_chunk, state, steps, chunk, progress,
                                history_axis=1, name="sweep")
  params = state.params
  if keep_best:
    params = _final_sweep(model, st, param, state, loop_keys, jnp.int32(steps))
  images, params = gather((_to_images(param, params), params), size)
  return engine.Result(images, params, history)
