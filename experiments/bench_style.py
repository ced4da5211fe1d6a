"""Style benchmark: Gatys style transfer on this library's jitted engine vs a
plain PyTorch loop on the identical network (`to_torch`), same layers, same
losses, same optimizer (Adam on pixels).

    python experiments/benchmark.py style [--repeats=3] [--quick]

Rows: the time per step of style transfer (5 Gram layers relu1_1..relu5_1,
content relu4_2, TV) on VGG16 (random weights) at 256x256 and 512x512; a
16-point sweep (style weight x TV weight) as one vmapped call vs 16
sequential PyTorch runs; and feed-forward stylization (`style.stylize`, the
shipped `Stylizer`) of one image at 256x256 and 512x512 vs the identical
network in eager PyTorch (`TorchStylizer`, weights copied, outputs checked
equal first). The two sides run alternately, pair by pair, so
both see the same machine load; each row's name carries the median of the
per-pair ratios (the figure to quote), its columns the median times.
"""

import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch

from cnnviz_jax import models, style
from cnnviz_jax.synthesis import engine
from cnnviz_jax.synthesis import param as P
from experiments import bench_common
from weights_conversion import torch_reference


def _on_gpu() -> bool:
  return jax.devices()[0].platform == "gpu"


def _images(hw, seed):
  """Smooth colour noise `[1, H, W, 3]` in [0, 1] (upsampled 8x): the speed
  does not depend on the picture."""
  rng = np.random.default_rng(seed)
  x = rng.uniform(0, 1, (1, max(1, hw[0] // 8), max(1, hw[1] // 8), 3))
  return jnp.clip(jax.image.resize(jnp.asarray(x, jnp.float32), (1, *hw, 3),
                                   "linear"), 0.0, 1.0)


class TorchGatys:
  """The same problem in eager PyTorch: forward to the deepest layer once per
  step, relative Gram and content errors, TV, Adam, clamp to [0, 1]."""

  def __init__(self, model, problem, layers, content_layer, device):
    self.net = torch_reference.to_torch(model).to(device).eval()
    for p in self.net.parameters():
      p.requires_grad_(False)
    self.device = device
    names = list(model.layer_names)
    # Child 0 is the Normalize module: layer i of the model is child i + 1.
    self.style_idx = [names.index(l) + 1 for l in layers]
    self.content_idx = names.index(content_layer) + 1
    self.last = max(self.style_idx + [self.content_idx])
    terms = problem.setup.objective.terms
    self.grams = [torch.from_numpy(np.array(t.args["target"][0])).to(device)
                  for t in terms if t.kind == "gram_match"]
    self.layer_w = [float(t.weight) for t in terms if t.kind == "gram_match"]
    feat = next(t for t in terms if t.kind == "feature_match").args["target"]
    self.content = torch.from_numpy(np.array(feat)).permute(0, 3, 1, 2).to(device)
    self.init = torch_reference.nhwc_to_nchw(problem.init).to(device)

  def run(self, steps, style_weight=1.0, tv_weight=10.0, lr=0.02):
    # style_weight multiplies the layer weights already in the objective.
    x = self.init.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    children = list(self.net.children())[:self.last + 1]
    for _ in range(steps):
      opt.zero_grad()
      h, feats = x, {}
      for i, m in enumerate(children):
        h = m(h)
        feats[i] = h
      loss = 0.0
      for i, g_t, w in zip(self.style_idx, self.grams, self.layer_w):
        f = feats[i]
        n, c, hh, ww = f.shape
        flat = f.reshape(n, c, hh * ww)
        g = flat @ flat.transpose(1, 2) / (hh * ww)
        loss = loss + style_weight * w * ((g - g_t) ** 2).sum() / ((g_t ** 2).sum() + 1e-8)
      a = feats[self.content_idx]
      loss = loss + ((a - self.content) ** 2).sum() / ((self.content ** 2).sum() + 1e-8)
      dx = x[:, :, :-1, 1:] - x[:, :, :-1, :-1]
      dy = x[:, :, 1:, :-1] - x[:, :, :-1, :-1]
      loss = loss + tv_weight * (dx ** 2 + dy ** 2 + 1e-8).mean()
      loss.backward()
      opt.step()
      with torch.no_grad():
        x.clamp_(0, 1)
    return x.detach()


class TorchStylizer(torch.nn.Module):
  """`style.Stylizer` in eager PyTorch (NCHW) with the same parameters:
  reflection padding, conv, instance norm with the blended affine part,
  nearest resize to the encoder stage's size, sigmoid."""

  def __init__(self, net, params, weights):
    super().__init__()
    self.flat = {k: torch.from_numpy(np.array(v)) for k, v in
                 models.core.flatten(params).items()}
    self.w = torch.as_tensor(np.asarray(weights, np.float32))
    self.net = net

  def _conv(self, x, name, stride=1):
    k = self.flat[f"{name}/kernel"].permute(3, 2, 0, 1).contiguous()  # HWIO -> OIHW
    p = k.shape[-1] // 2
    x = torch.nn.functional.pad(x, (p, p, p, p), mode="reflect")
    return torch.nn.functional.conv2d(x, k, self.flat[f"{name}/bias"], stride=stride)

  def _block(self, x, name, stride=1, relu=True):
    x = torch.nn.functional.instance_norm(self._conv(x, f"{name}/conv", stride), eps=1e-5)
    gamma = self.w @ self.flat[f"{name}/norm/scale"]
    beta = self.w @ self.flat[f"{name}/norm/bias"]
    x = x * gamma[None, :, None, None] + beta[None, :, None, None]
    return torch.relu(x) if relu else x

  def forward(self, x):
    x = x * 2.0 - 1.0
    x = self._block(x, "enc1")
    h1 = x.shape[2:]
    x = self._block(x, "enc2", 2)
    h2 = x.shape[2:]
    x = self._block(x, "enc3", 2)
    for i in range(self.net.num_residual):
      x = x + self._block(self._block(x, f"res{i + 1}/a"), f"res{i + 1}/b", relu=False)
    x = self._block(torch.nn.functional.interpolate(x, size=tuple(h2), mode="nearest"), "dec1")
    x = self._block(torch.nn.functional.interpolate(x, size=tuple(h1), mode="nearest"), "dec2")
    return torch.sigmoid(self._conv(x, "out"))


def _stylizer():
  """The shipped stylizer, or (before one is trained) the same architecture
  with random parameters: the speed does not depend on the values."""
  try:
    return style.load_stylizer()
  except FileNotFoundError:
    net = style.Stylizer(num_styles=4)
    return net, net.init_params(jax.random.PRNGKey(0))


def stylize_row(hw, repeats):
  net, params = _stylizer()
  x = _images(hw, 0)
  weights = np.eye(net.num_styles, dtype=np.float32)[0]
  theirs = TorchStylizer(net, params, weights)
  xt = torch_reference.nhwc_to_nchw(x)

  def torch_run():
    with torch.no_grad():
      return theirs(xt)
  # The identical network: the outputs agree before anything is timed.
  err = np.abs(np.asarray(style.stylize(net, params, x, style=0))
               - torch_reference.nchw_to_nhwc(torch_run())).max()
  if err > 1e-4:
    raise AssertionError(f"TorchStylizer differs from style.Stylizer by {err:.3g}.")
  o, t, r = _paired(lambda: style.stylize(net, params, x, style=0), torch_run,
                    repeats)
  return _row(f"stylize {hw[0]}x{hw[1]} (1 image, forward)", o, t, r,
              "torch eager, same network")


def _paired(ours, theirs, repeats):
  """Alternates the two (ours first), after one warm-up each; returns
  (median ours s, median theirs s, median of per-pair ratios theirs/ours)."""
  bench_common._sync(ours())
  bench_common._sync(theirs())
  a, b = [], []
  for _ in range(repeats):
    for fn, out in ((ours, a), (theirs, b)):
      t = time.perf_counter()
      bench_common._sync(fn())
      out.append(time.perf_counter() - t)
  ratios = [y / x for x, y in zip(a, b)]
  return statistics.median(a), statistics.median(b), statistics.median(ratios)


def _row(name, ours, theirs, ratio, baseline, per=1):
  row = bench_common.Row(f"{name} [pair-median {ratio:.2f}x]", ours / per,
                         theirs / per, baseline)
  print(f"  {row.name}: ours {row.ours_s:.4f} s, torch {row.baseline_s:.4f} s",
        file=sys.stderr, flush=True)
  return row


def _problem(model, hw, **kw):
  content, painting = _images(hw, 0), _images(hw, 1)
  return style.transfer_problem(model, content, [painting], key=jax.random.PRNGKey(0),
                                **kw)


def step_row(model, hw, steps, repeats, chunk=None, unroll=None):
  layers, content_layer = style.default_layers(model)
  problem = _problem(model, hw)
  theirs = TorchGatys(model, problem, layers, content_layer, bench_common.torch_device())
  p = P.pixels(1, hw)

  def ours():
    return engine.optimize(model, problem.setup, p, key=jax.random.PRNGKey(0),
                           steps=steps, optimizer="adam", init=problem.init,
                           chunk=chunk, unroll=unroll).images
  # The objective's Gram weights already hold style_weight (100) x 1/5.
  o, t, r = _paired(ours, lambda: theirs.run(steps), repeats)
  return _row(f"gatys {model.name} {hw[0]}x{hw[1]} Adam (per step)", o, t, r,
              "torch eager loop", per=steps)


def sweep_row(model, hw, steps, repeats, chunk=None, unroll=None):
  grid = [(s, t) for s in (10.0, 30.0, 100.0, 300.0) for t in (0.0, 1.0, 10.0, 100.0)]
  points = [dict(style_weight=s, tv_weight=t) for s, t in grid]
  content, painting = _images(hw, 0), _images(hw, 1)
  layers, content_layer = style.default_layers(model)
  problem = _problem(model, hw, style_weight=1.0)
  theirs = TorchGatys(model, problem, layers, content_layer, bench_common.torch_device())

  def ours():
    return style.transfer_sweep(model, content, [painting], points,
                                key=jax.random.PRNGKey(0), steps=steps,
                                chunk=chunk, unroll=unroll).images

  def torch_runs():
    return [theirs.run(steps, style_weight=s, tv_weight=t) for s, t in grid]
  o, t, r = _paired(ours, torch_runs, repeats)
  return _row(f"{len(grid)}-point sweep {model.name} {hw[0]}x{hw[1]}, {steps} steps "
              "(total)", o, t, r, f"{len(grid)} sequential torch runs")


def run(repeats: int, quick: bool) -> list[bench_common.Row]:
  torch.manual_seed(0)
  repeats = max(1, min(repeats, 1 if quick else 5))
  if quick:
    vgg = models.load("vgg11", key=jax.random.PRNGKey(0))
    return [step_row(vgg, (32, 32), 2, repeats),
            sweep_row(models.load("cifar_vgg"), (32, 32), 2, repeats),
            stylize_row((64, 64), repeats)]
  vgg = models.load("vgg16", key=jax.random.PRNGKey(0))
  if _on_gpu():
    # No while-loop penalty on GPUs (module doc of the engine): long rolled
    # chunks compile once and fast.
    return [step_row(vgg, (256, 256), 50, repeats, chunk=50, unroll=1),
            step_row(vgg, (512, 512), 50, repeats, chunk=50, unroll=1),
            sweep_row(vgg, (256, 256), 50, repeats, chunk=50, unroll=1),
            stylize_row((256, 256), repeats), stylize_row((512, 512), repeats)]
  # 5 steps: one unrolled chunk (the engine's CPU default); the sweep on the
  # CIFAR network at 64 px keeps 16 CPU runs inside minutes.
  return [step_row(vgg, (256, 256), 5, repeats),
          step_row(vgg, (512, 512), 5, max(1, repeats // 2)),
          sweep_row(models.load("cifar_vgg"), (64, 64), 10, repeats),
          stylize_row((256, 256), repeats), stylize_row((512, 512), repeats)]
