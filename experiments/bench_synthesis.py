"""Synthesis benchmark: this library's jitted loop vs a plain PyTorch eager loop
on the identical network (converted weights), the same steps and regularizers.

    python experiments/benchmark.py synthesis [--repeats=3] [--quick]

Rows (per step; the two sides alternately, pair by pair, after one warm-up
call each, which compiles ours; the speed-up is the median per-pair ratio):
  class visualization (logit - L2, jitter, blur every 4, Adam) and DeepDream
  (layer L2, roll, step / mean |g|, clip) on VGG16 with random weights at
  224x224 and on cifar_vgg at 64x64; and a 16-point hyperparameter sweep
  (L2 weight x blur sigma x learning rate) as one vmapped call vs 16 sequential
  PyTorch runs (whole runs).
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F

from cnnviz_jax import models
from cnnviz_jax import objectives as O
from cnnviz_jax.synthesis import engine as opt
from cnnviz_jax.synthesis import param as P
from cnnviz_jax.synthesis import sweep_engine
from cnnviz_jax.synthesis import transforms as T
from experiments import bench_common
from weights_conversion import torch_reference

JITTER, BLUR_EVERY, BLUR_RADIUS = 2, 4, 2


def _torch_blur(x, sigma, radius):
  t = torch.arange(-radius, radius + 1, dtype=torch.float32, device=x.device)
  k = torch.exp(-0.5 * (t / max(sigma, 1e-3)) ** 2)
  k = k / k.sum()
  c = x.shape[1]
  x = F.pad(x, (radius,) * 4, mode="reflect")
  x = F.conv2d(x, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
  return F.conv2d(x, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)


def torch_class_viz(net, n, hw, targets, steps, l2=0.3, sigma=0.5, lr=0.05, seed=0):
  """Adam on pixels: logit - l2 * mean((x - 0.5)^2), jitter, blur, clip."""
  g = torch.Generator().manual_seed(seed)
  dev = next(net.parameters()).device
  x = (0.5 + 0.01 * torch.randn(n, 3, *hw, generator=g)).clamp(0, 1).to(dev)
  x.requires_grad_(True)
  optim = torch.optim.Adam([x], lr=lr)
  t = torch.as_tensor(targets).to(dev)
  rows = torch.arange(n, device=dev)
  for i in range(steps):
    optim.zero_grad()
    oy, ox = torch.randint(0, 2 * JITTER + 1, (2,), generator=g).tolist()
    xi = F.pad(x, (JITTER,) * 4, mode="reflect")[:, :, oy:oy + hw[0], ox:ox + hw[1]]
    logits = net(xi)
    obj = logits[rows, t] - l2 * ((x - 0.5) ** 2).mean(dim=(1, 2, 3))
    (-obj.sum()).backward()
    optim.step()
    with torch.no_grad():
      if i % BLUR_EVERY == BLUR_EVERY - 1:
        x.copy_(_torch_blur(x, sigma, BLUR_RADIUS))
      x.clamp_(0, 1)
  return x.detach()


def torch_deepdream(net_to_layer, image, steps, step_size=0.01, roll=8, seed=0):
  """DeepDream steps: grad of mean(a^2)/2, roll, step / mean |g|, clip."""
  g = torch.Generator().manual_seed(seed)
  x = image.clone()
  for _ in range(steps):
    sy, sx = torch.randint(-roll, roll + 1, (2,), generator=g).tolist()
    xr = torch.roll(x, (sy, sx), dims=(2, 3)).requires_grad_(True)
    a = net_to_layer(xr)
    (0.5 * (a ** 2).mean()).backward()
    grad = torch.roll(xr.grad, (-sy, -sx), dims=(2, 3))
    with torch.no_grad():
      x = (x + step_size * grad / (grad.abs().mean() + 1e-12)).clamp(0, 1)
  return x


def _log(row):
  print(f"  {row.name}: ours {row.ours_s:.4f} s, torch {row.baseline_s:.4f} s",
        file=sys.stderr, flush=True)
  return row


def _truncate(net, model, layer):
  idx = model.layer_names.index(layer) + 1  # + the Normalize module
  return torch.nn.Sequential(*list(net.children())[:idx + 1])


def _class_setup(l2=0.3, sigma=0.5, lr=0.05, targets=None):
  return opt.Setup(O.class_logit(targets) - l2 * O.l2(), T.jitter(JITTER),
                   T.gaussian_blur(sigma, every=BLUR_EVERY, radius=BLUR_RADIUS), lr)


def _ours_class(model, n, hw, steps):
  s = _class_setup(targets=jnp.arange(n) % model.num_classes)
  return lambda: opt.optimize(model, s, P.pixels(n, hw), key=jax.random.PRNGKey(0),
                              steps=steps).images


def _ours_dream(model, image, layer, steps, roll):
  return lambda: opt.optimize(
      model, opt.Setup(O.layer_l2(layer), T.roll(roll), learning_rate=0.01),
      P.pixels(image.shape[0], image.shape[1:3]), key=jax.random.PRNGKey(0),
      steps=steps, optimizer=opt.make_optimizer("sgd", "mean_abs"), init=image).images


def _paired(name, ours, theirs, repeats, baseline, per=1):
  """Ours and the baseline timed alternately (`bench_common.paired_times`),
  times per step when `per` steps run in a call."""
  t = bench_common.paired_times({"ours": ours, "torch": theirs}, repeats)
  return _log(bench_common.paired_row(name, [x / per for x in t["ours"]],
                                      [x / per for x in t["torch"]], baseline))


def _rows_for(name, model, hw, n, layer, steps, repeats):
  net = torch_reference.to_torch(model).to(bench_common.torch_device())
  rows = [_paired(f"class viz {name} {hw[0]}x{hw[1]} b{n} (per step)",
                  _ours_class(model, n, hw, steps),
                  lambda: torch_class_viz(net, n, hw, np.arange(n) % model.num_classes,
                                          steps),
                  repeats, "torch eager loop", per=steps)]
  image = jnp.asarray(np.random.default_rng(0).uniform(0.2, 0.8, (1, *hw, 3)), jnp.float32)
  roll = max(1, hw[0] // 16)
  trunc = _truncate(net, model, layer)
  timage = torch_reference.nhwc_to_nchw(image).to(bench_common.torch_device())
  rows.append(_paired(f"deepdream {name} {layer} {hw[0]}x{hw[1]} (per step)",
                      _ours_dream(model, image, layer, steps, roll),
                      lambda: torch_deepdream(trunc, timage, steps, roll=roll),
                      repeats, "torch eager loop", per=steps))
  return rows


def _sweep_row(model, hw, steps, repeats, points=16):
  grid = [(l2, sigma, lr) for l2 in (0.1, 1.0) for sigma in (0.4, 0.8)
          for lr in (0.02, 0.05, 0.1, 0.2)][:points]
  setups = [_class_setup(l2, s, lr, targets=jnp.arange(1) + 3) for l2, s, lr in grid]
  keys = jax.random.split(jax.random.PRNGKey(0), len(grid))
  p = P.pixels(1, hw)
  net = torch_reference.to_torch(model).to(bench_common.torch_device())
  return _paired(
      f"{len(grid)}-point sweep {model.name} {hw[0]}x{hw[1]}, {steps} steps (total)",
      lambda: sweep_engine.sweep(model, setups, p, keys=keys, steps=steps).images,
      lambda: [torch_class_viz(net, 1, hw, [3], steps, l2, s, lr, seed=i)
               for i, (l2, s, lr) in enumerate(grid)],
      repeats, f"{len(grid)} sequential torch runs")


def run(repeats: int, quick: bool) -> list[bench_common.Row]:
  torch.manual_seed(0)
  repeats = max(1, min(repeats, 1 if quick else 3))
  cifar = models.load("cifar_vgg")
  if quick:
    vgg = models.load("vgg11", key=jax.random.PRNGKey(0))
    rows = _rows_for("vgg11(random)", vgg, (32, 32), 1, "relu3_1", 2, repeats)
    rows += _rows_for("cifar_vgg", cifar, (32, 32), 2, "relu2_2", 2, repeats)
    rows.append(_sweep_row(cifar, (32, 32), 2, repeats, points=4))
    return rows
  vgg = models.load("vgg16", key=jax.random.PRNGKey(0))
  rows = _rows_for("vgg16(random)", vgg, (224, 224), 1, "relu4_3", 2, repeats)
  rows += _rows_for("cifar_vgg", cifar, (64, 64), 10, "relu3_2", 10, repeats)
  rows.append(_sweep_row(cifar, (32, 32), 10, repeats))
  return rows
