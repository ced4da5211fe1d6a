"""Dataset-pass speed: cnnviz_jax.features vs PyTorch (and scikit-learn's
NearestNeighbors) on the identical network, in one run.

  python experiments/benchmark.py features [--repeats=3] [--quick]

Rows (CIFAR-sized uint8 images, 50,000 by default, the size of the CIFAR-10
training set; random pixels: speed does not depend on content):
  - feature extraction: the shipped `cifar_vgg` up to `relu7`;
  - top-k patch mining: all 256 channels of `relu3_2`, k = 9, one unit per
    image (the torch side merges a running top-k with `torch.topk`, as ours
    does with `lax.top_k`);
  - nearest neighbours: 1,000 queries against the 50,000 vectors, k = 5, in
    feature space (256-D relu7-like vectors) and pixel space (3,072-D),
    against `sklearn.neighbors.NearestNeighbors(algorithm="brute")` and a
    chunked `torch.cdist` + `torch.topk`.
Each side runs at its own fastest batch on a 2-core CPU: ours at the
library's default (32; XLA:CPU is faster on small batches), PyTorch at 256
(measured over 2,048 images: 11.6 s at 256, 16.5 s at 64, 26.0 s at 32).
Each side is warmed up (compiled) on one batch; then the two are timed in
turn, pass by pass (`bench_common.paired_times`), so that load from other
jobs falls on both alike, and the speed-up is the median per-pair ratio.
The row name carries both sides' images (or queries) per second.
"""

import jax
import numpy as np

from cnnviz_jax import features as F
from cnnviz_jax import models
from experiments import bench_common

TORCH_BATCH = 256
TOPK_LAYER, TOPK_K = "relu3_2", 9
FEATURE_LAYER = "relu7"


def _torch_net(model, layer):
  """The PyTorch twin of `model`, cut after `layer`."""
  import torch
  from weights_conversion import torch_reference as tr
  net = tr.to_torch(model).to(bench_common.torch_device()).eval()
  names = [n for n, _ in net.named_children()]
  return torch.nn.Sequential(*list(net.children())[:names.index(layer) + 1])


def _torch_batches(x, fn):
  import torch
  dev = bench_common.torch_device()
  with torch.inference_mode():
    for i in range(0, len(x), TORCH_BATCH):
      xb = torch.from_numpy(x[i:i + TORCH_BATCH]).to(dev)
      fn(i, xb.permute(0, 3, 1, 2).float().div_(255.0))


def torch_extract(net, x):
  out = np.empty((len(x), 0), np.float32)

  def step(i, xb):
    nonlocal out
    f = net(xb).flatten(1).cpu().numpy()
    if out.shape[1] == 0:
      out = np.empty((len(x), f.shape[1]), np.float32)
    out[i:i + len(f)] = f
  _torch_batches(x, step)
  return out


def torch_top_activations(net, x, k):
  import torch
  state = {}

  def step(i, xb):
    a = net(xb).flatten(2)                       # [B, C, hw]
    vals, pos = a.max(2)                         # one unit per image
    img = torch.arange(i, i + len(a), device=a.device).expand(a.shape[1], -1)
    cand = (vals.T, img, pos.T)
    if state:
      cand = tuple(torch.cat([s, c], 1) for s, c in zip(state["s"], cand))
    best, sel = torch.topk(cand[0], min(k, cand[0].shape[1]), dim=1)
    state["s"] = (best, cand[1].gather(1, sel), cand[2].gather(1, sel))
  _torch_batches(x, step)
  return tuple(s.cpu().numpy() for s in state["s"])


def torch_nearest(q, db, k, chunk=4096):
  import torch
  dev = bench_common.torch_device()
  q = torch.from_numpy(q).to(dev)
  best_d = best_i = None
  with torch.inference_mode():
    for s in range(0, len(db), chunk):
      d = torch.cdist(q, torch.from_numpy(db[s:s + chunk]).to(dev))
      vals, idx = torch.topk(d, min(k, d.shape[1]), dim=1, largest=False)
      idx = idx + s
      if best_d is not None:
        vals, idx = torch.cat([best_d, vals], 1), torch.cat([best_i, idx], 1)
      best_d, sel = torch.topk(vals, k, dim=1, largest=False)
      best_i = idx.gather(1, sel)
  return best_d.cpu().numpy(), best_i.cpu().numpy()


def run(repeats: int, quick: bool, *, images: int = 50_000,
        queries: int = 1_000) -> list[bench_common.Row]:
  """Benchmark rows; `quick`: the tiny model on 512 images (checks wiring).

  `images` and `queries` shrink the passes for a slower run (time is linear
  in both).
  """
  from sklearn.neighbors import NearestNeighbors
  if quick:
    model, images, queries = models.load("tiny", key=jax.random.PRNGKey(0)), 512, 64
    feature_layer, topk_layer, hw, repeats = "relu6", "relu2_1", 16, 1
  else:
    model, feature_layer, topk_layer, hw = (models.load("cifar_vgg"),
                                            FEATURE_LAYER, TOPK_LAYER, 32)
  rng = np.random.RandomState(0)
  x = rng.randint(0, 256, (images, hw, hw, 3)).astype(np.uint8)
  rows = []

  def timed(name, ours, theirs, baseline, count, unit, warmup=0):
    t = bench_common.paired_times({"ours": ours, "theirs": theirs}, repeats,
                                  warmup=warmup)
    row = bench_common.paired_row(name, t["ours"], t["theirs"], baseline)
    rows.append(row._replace(name=f"{name} ({count / row.ours_s:.0f} vs "
                                  f"{count / row.baseline_s:.0f} {unit}/s)"))
    print(bench_common.format_table("features (so far)", rows[-1:]), flush=True)

  # Compilation and first-call costs on one batch, outside the timing.
  net = _torch_net(model, feature_layer)
  F.extract(model, x[:TORCH_BATCH], feature_layer)
  torch_extract(net, x[:TORCH_BATCH])
  timed(f"extract {feature_layer} {images} images",
        lambda: F.extract(model, x, feature_layer),
        lambda: torch_extract(net, x), "torch", images, "img")

  net = _torch_net(model, topk_layer)
  F.top_activations(model, x[:TORCH_BATCH], topk_layer, k=TOPK_K)
  torch_top_activations(net, x[:TORCH_BATCH], TOPK_K)
  timed(f"top-{TOPK_K} {topk_layer} all channels {images} images",
        lambda: F.top_activations(model, x, topk_layer, k=TOPK_K).values,
        lambda: torch_top_activations(net, x, TOPK_K), "torch", images, "img")

  for space, dims in (("feature", 256), ("pixel", hw * hw * 3)):
    db = np.maximum(rng.randn(images, dims), 0).astype(np.float32)
    q = np.maximum(rng.randn(queries, dims), 0).astype(np.float32)
    ours = lambda: F.nearest_neighbors(q, db, k=5)
    name = f"kNN {queries}x{images} {space} {dims}-D k5"
    sk = NearestNeighbors(n_neighbors=5, algorithm="brute")
    # Searches are short: one untimed round of each side (compilation).
    timed(name, ours, lambda: sk.fit(db).kneighbors(q), "sklearn", queries,
          "query", warmup=1)
    timed(name, ours, lambda: torch_nearest(q, db, 5), "torch", queries,
          "query", warmup=1)
  return rows
