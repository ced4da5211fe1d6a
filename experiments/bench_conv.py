"""Per-layer convolution speed: forward, input-gradient and weight-gradient
GFLOP/s of `models.conv.conv2d` (ours), XLA's own convolution and PyTorch on
the same shapes, against the measured fp32 GEMM peak.

  python experiments/benchmark.py conv [--repeats=5] [--quick]

Shapes: the distinct convolutions of VGG16 at 224x224 (batch 4, the
attribution benchmark's batch) and of Johnson et al.'s style-transfer network
at 256x256 (batch 4): the 9x9 3->32 first layer, the two 3x3 stride-2
downsampling layers and the 3x3 128->128 residual-block layer at 64x64; and
the CIFAR VGG's at batch 128 (the training benchmark's batch). The
three sides are timed alternately, pair by pair; rows give the median of the
per-pair ratios.
"""

import functools

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from cnnviz_jax.models import conv
from experiments import bench_common

# (name, batch, height = width, in channels, out channels, kernel, stride,
# padding).
VGG16_224 = (
    ("vgg16 conv1_1 224 3->64", 4, 224, 3, 64, 3, 1, 1),
    ("vgg16 conv1_2 224 64->64", 4, 224, 64, 64, 3, 1, 1),
    ("vgg16 conv2_1 112 64->128", 4, 112, 64, 128, 3, 1, 1),
    ("vgg16 conv2_2 112 128->128", 4, 112, 128, 128, 3, 1, 1),
    ("vgg16 conv3_1 56 128->256", 4, 56, 128, 256, 3, 1, 1),
    ("vgg16 conv3_2 56 256->256", 4, 56, 256, 256, 3, 1, 1),
    ("vgg16 conv4_1 28 256->512", 4, 28, 256, 512, 3, 1, 1),
    ("vgg16 conv4_2 28 512->512", 4, 28, 512, 512, 3, 1, 1),
    ("vgg16 conv5_1 14 512->512", 4, 14, 512, 512, 3, 1, 1),
)
JOHNSON_256 = (
    ("johnson 9x9 256 3->32", 4, 256, 3, 32, 9, 1, 4),
    ("johnson s2 256 32->64", 4, 256, 32, 64, 3, 2, 1),
    ("johnson s2 128 64->128", 4, 128, 64, 128, 3, 2, 1),
    ("johnson res 64 128->128", 4, 64, 128, 128, 3, 1, 1),
)
CIFAR_VGG_128 = (  # the training step's batch
    ("cifar_vgg conv1_1 32 3->64", 128, 32, 3, 64, 3, 1, 1),
    ("cifar_vgg conv2_1 16 64->128", 128, 16, 64, 128, 3, 1, 1),
    ("cifar_vgg conv2_2 16 128->128", 128, 16, 128, 128, 3, 1, 1),
    ("cifar_vgg conv3_1 8 128->256", 128, 8, 128, 256, 3, 1, 1),
    ("cifar_vgg conv3_2 8 256->256", 128, 8, 256, 256, 3, 1, 1),
    ("cifar_vgg conv4_1 4 256->384", 128, 4, 256, 384, 3, 1, 1),
)
QUICK = (
    ("quick 3x3 16 8->16", 2, 16, 8, 16, 3, 1, 1),
    ("quick 3x3 s2 16 3->8", 2, 16, 3, 8, 3, 2, 1),
)
PASSES = ("forward", "input grad", "weight grad")


def gemm_peak(repeats: int, size: int = 4096) -> float:
  """fp32 GFLOP/s of one `size`^3 `jnp.dot`, median of `repeats`."""
  a = jax.random.normal(jax.random.PRNGKey(0), (size, size))
  b = jax.random.normal(jax.random.PRNGKey(1), (size, size))
  dot = jax.jit(jnp.dot)
  seconds = bench_common.median_time(lambda: dot(a, b), repeats)
  return 2 * size ** 3 / seconds / 1e9


def _jax_passes(conv_fn, x, w, b, g):
  """{pass: thunk} for `conv_fn(x, w, b)`; each gradient is asked for alone
  (XLA drops the unused forward output)."""
  fwd = jax.jit(conv_fn)
  ig = jax.jit(lambda x, w, g: jax.vjp(lambda x: conv_fn(x, w, None), x)[1](g)[0])
  wg = jax.jit(lambda x, w, g: jax.vjp(lambda w: conv_fn(x, w, None), w)[1](g)[0])
  return {"forward": lambda: fwd(x, w, b), "input grad": lambda: ig(x, w, g),
          "weight grad": lambda: wg(x, w, g)}


def _torch_passes(x, w, b, g, stride, padding):
  """The same passes with PyTorch's own kernels (oneDNN on CPU): the forward,
  and `convolution_backward` with one output mask per gradient, as autograd
  calls it."""
  import torch
  from weights_conversion import torch_reference as tr
  dev = bench_common.torch_device()
  xt, gt = tr.nhwc_to_nchw(x).to(dev), tr.nhwc_to_nchw(g).to(dev)
  wt = torch.from_numpy(np.asarray(w).transpose(3, 2, 0, 1).copy()).to(dev)
  bt = torch.from_numpy(np.array(b)).to(dev)
  args = ([wt.shape[0]], [stride] * 2, [padding] * 2, [1, 1], False, [0, 0], 1)

  def backward(mask):
    with torch.no_grad():
      return torch.ops.aten.convolution_backward(gt, xt, wt, *args, mask)

  def forward():
    with torch.no_grad():
      return torch.nn.functional.conv2d(xt, wt, bt, stride, padding)
  return {"forward": forward,
          "input grad": lambda: backward([True, False, False]),
          "weight grad": lambda: backward([False, True, False])}


def run(repeats: int, quick: bool) -> list[bench_common.Row]:
  import torch
  torch.set_num_threads(2)  # the 2 cores here, as in the other suites
  print(f"conv suite: {bench_common.load_average()}; torch threads "
        f"{torch.get_num_threads()}", flush=True)
  peak = gemm_peak(repeats, 512 if quick else 4096)
  print(f"fp32 GEMM peak (jnp.dot 4096^3): {peak:.0f} GFLOP/s", flush=True)
  rows = []
  header = (f"{'layer':30s} {'pass':12s} {'ours':>6s} {'xla':>6s} {'torch':>6s} "
            f"GFLOP/s  {'ours/peak':>9s} {'plan':>8s}")
  print(header, flush=True)
  for name, n, hw, cin, cout, k, s, p in (QUICK if quick else VGG16_224 + JOHNSON_256 + CIFAR_VGG_128):
    kx, kw_, kg = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(kx, (n, hw, hw, cin))
    w = jax.random.normal(kw_, (k, k, cin, cout)) * (2.0 / (k * k * cin)) ** 0.5
    b = jnp.zeros((cout,))
    ho = (hw + 2 * p - k) // s + 1
    g = jax.random.normal(kg, (n, ho, ho, cout))
    flop = 2.0 * n * ho * ho * k * k * cin * cout
    ours = _jax_passes(functools.partial(conv.conv2d, stride=s, padding=p),
                       x, w, b, g)
    xla = _jax_passes(
        lambda x, w, b: (lax.conv_general_dilated(
            x, w, (s, s), ((p, p), (p, p)),
            dimension_numbers=("NHWC", "HWIO", "NHWC")) +
                         (0.0 if b is None else b)), x, w, b, g)
    theirs = _torch_passes(x, w, b, g, s, p)
    plan = conv.plan(x.shape, w.shape, s, p)
    for pass_, method in zip(PASSES, (plan["forward"], plan["input_grad"],
                                      plan["weight_grad"])):
      t = bench_common.paired_times({"ours": ours[pass_], "xla": xla[pass_],
                                     "torch": theirs[pass_]}, repeats)
      med = {side: float(np.median(v)) for side, v in t.items()}
      gf = {side: flop / sec / 1e9 for side, sec in med.items()}
      print(f"{name:30s} {pass_:12s} {gf['ours']:6.0f} {gf['xla']:6.0f} "
            f"{gf['torch']:6.0f}          {gf['ours'] / peak:8.0%} {method:>8s}",
            flush=True)
      rows.append(bench_common.paired_row(f"{name} {pass_}", t["ours"],
                                          t["torch"], "torch"))
      rows.append(bench_common.paired_row(f"{name} {pass_}", t["ours"],
                                          t["xla"], "xla default"))
  print(f"conv suite done: {bench_common.load_average()}", flush=True)
  return rows
