"""Training-step speed: the `cifar_vgg` network, batch 128, SGD with momentum,
ours against the same network in PyTorch (`torch_reference.to_torch`).

  python experiments/benchmark.py train [--repeats=5] [--quick]

One step is: normalize, forward, softmax cross-entropy, backward, SGD update
(learning rate 0.01, momentum 0.9), on a fixed batch of random 32x32 images.
The shipped `cifar_vgg` is the training network with its BatchNorms folded
(`models.train`), so this is the training step less the BatchNorms, on both
sides. Rows: ours against PyTorch, and ours against the same JAX step with
XLA's own convolution gradients (every `conv2d` planned as "xla"), each side
timed alternately, pair by pair.
"""

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cnnviz_jax import models
from cnnviz_jax.models import conv
from experiments import bench_common

_LR, _MOMENTUM = 0.01, 0.9


@contextlib.contextmanager
def xla_formulations():
  """Traces inside this context plan every `conv2d` as XLA's own formulation
  (the baseline that `nn.Conv` gave)."""
  saved = conv.plan
  conv.plan = lambda *a, **k: {"forward": "xla", "input_grad": "xla",
                               "weight_grad": "xla"}
  try:
    yield
  finally:
    conv.plan = saved


def _jax_step(model, tx):
  def loss(params, x, y):
    logits, _ = model.apply(params, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  @jax.jit
  def step(params, opt_state, x, y):
    value, grads = jax.value_and_grad(loss)(params, x, y)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, value
  return step


def _jax_runner(model, x, y, xla: bool):
  """A thunk running one step and keeping the new state (compiled now)."""
  tx = optax.sgd(_LR, momentum=_MOMENTUM)
  state = [jax.tree_util.tree_map(jnp.array, model.params)]
  state.append(tx.init(state[0]))
  step = _jax_step(model, tx)

  def run_one():
    state[0], state[1], value = step(state[0], state[1], x, y)
    return value
  with xla_formulations() if xla else contextlib.nullcontext():
    jax.block_until_ready(run_one())  # traces (and plans) here
  return run_one


def _torch_runner(model, x, y):
  import torch
  from weights_conversion import torch_reference as tr
  dev = bench_common.torch_device()
  net = tr.to_torch(model).to(dev).train()
  opt = torch.optim.SGD(net.parameters(), lr=_LR, momentum=_MOMENTUM)
  xt, yt = tr.nhwc_to_nchw(x).to(dev), torch.from_numpy(np.asarray(y)).long().to(dev)

  def run_one():
    opt.zero_grad(set_to_none=True)
    value = torch.nn.functional.cross_entropy(net(xt), yt)
    value.backward()
    opt.step()
    return value
  return run_one


def run(repeats: int, quick: bool) -> list[bench_common.Row]:
  import torch
  torch.set_num_threads(2)  # the 2 cores here, as in the other suites
  batch = 8 if quick else 128
  print(f"train suite: {bench_common.load_average()}", flush=True)
  model = models.load("cifar_vgg")
  x = jax.random.uniform(jax.random.PRNGKey(0), (batch, 32, 32, 3))
  y = jax.random.randint(jax.random.PRNGKey(1), (batch,), 0, model.num_classes)
  t = bench_common.paired_times({
      "ours": _jax_runner(model, x, y, xla=False),
      "xla": _jax_runner(model, x, y, xla=True),
      "torch": _torch_runner(model, x, y)}, repeats)
  for side, v in t.items():
    print(f"  {side}: {batch / np.median(v):.0f} images/s", flush=True)
  name = f"cifar_vgg train step b{batch} SGD momentum"
  print(f"train suite done: {bench_common.load_average()}", flush=True)
  return [bench_common.paired_row(name, t["ours"], t["torch"], "torch"),
          bench_common.paired_row(name, t["ours"], t["xla"], "xla default")]
