"""Attribution speed: cnnviz_jax vs Captum on the identical network.

  python experiments/benchmark.py attribution [--repeats=3] [--quick]

Rows: saliency, integrated gradients (50 steps), SmoothGrad (50 samples),
occlusion and Grad-CAM on VGG16 (random weights) at 224x224 batch 4 and on the
shipped CIFAR model at batch 256. Both sides run the same network (Captum on
`to_torch(model)`), the same batch, the same expansion batch per call (IG
steps / SmoothGrad samples / occlusion positions per network call) and the
same settings. The two sides run alternately, call by call, after a warm-up
call each (ours compiles in it); a row's speed-up is the median of the
per-pair ratios.
"""


import jax
import numpy as np

from cnnviz_jax import attribution as A
from cnnviz_jax import models
from experiments import bench_common


def _setup(name, batch, hw):
  if name == "cifar_vgg":
    model = models.load("cifar_vgg")
  else:
    model = models.load(name, key=jax.random.PRNGKey(0))
  x = np.asarray(jax.random.uniform(jax.random.PRNGKey(1), (batch, *hw, 3)))
  t = (np.arange(batch) * 7 % model.num_classes).astype(np.int32)
  return model, x, t


def _suite(label, model, x, t, *, steps, samples, per_call, window, stride,
           layer, torch_layer, repeats, warmup):
  import torch
  from captum import attr as ca
  from weights_conversion import torch_reference as tr

  dev = bench_common.torch_device()
  net = tr.to_torch(model).to(dev)
  xt = tr.nhwc_to_nchw(x).to(dev).requires_grad_(True)
  tt = torch.from_numpy(t).long().to(dev)
  n = x.shape[0]
  # Expansion chunk: `per_call` images per network call on both sides.
  chunk = max(1, per_call // n)
  key = jax.random.PRNGKey(0)
  cases = [
      ("saliency",
       lambda: A.saliency(model, x, t),
       lambda: ca.Saliency(net).attribute(xt, target=tt, abs=False)),
      (f"IG {steps} steps",
       lambda: A.integrated_gradients(model, x, t, steps=steps,
                                      chunk_size=chunk).attributions,
       lambda: ca.IntegratedGradients(net).attribute(
           xt, target=tt, n_steps=steps, internal_batch_size=chunk * n)),
      (f"SmoothGrad {samples} samples",
       lambda: A.smoothgrad(model, x, t, key=key, samples=samples,
                            sigma=0.15, chunk_size=chunk),
       lambda: ca.NoiseTunnel(ca.Saliency(net)).attribute(
           xt, target=tt, nt_type="smoothgrad", nt_samples=samples,
           nt_samples_batch_size=chunk, stdevs=0.15, abs=False)),
      (f"occlusion {window}/{stride}",
       lambda: A.occlusion(model, x, t, window=window, stride=stride, fill=0.5,
                           probabilities=False, chunk_size=chunk),
       lambda: ca.Occlusion(net).attribute(
           xt, target=tt, sliding_window_shapes=(3, window, window),
           strides=(3, stride, stride), baselines=0.5,
           perturbations_per_eval=chunk)),
      (f"Grad-CAM {layer}",
       lambda: A.grad_cam(model, x, t, layer=layer),
       lambda: ca.LayerGradCam(net, getattr(net, torch_layer)).attribute(
           xt, target=tt, relu_attributions=True)),
  ]
  rows = []
  for name, ours, theirs in cases:
    times = bench_common.paired_times({"ours": ours, "captum": theirs}, repeats,
                                  warmup=warmup)
    rows.append(bench_common.paired_row(f"{label} {name}", times["ours"],
                                        times["captum"], "captum"))
    print(bench_common.format_table("attribution (so far)", rows[-1:]), flush=True)
  return rows


def run(repeats: int, quick: bool, *, steps: int = 50, samples: int = 50,
        captum_warmup: int = 1) -> list[bench_common.Row]:
  """Benchmark rows; `quick` shrinks models and sizes to run in about a minute.

  `steps` / `samples` override the IG steps and SmoothGrad samples (time is
  linear in them), for a reduced run on a slow machine.
  """
  if quick:
    model, x, t = _setup("tiny", 4, (16, 16))
    return _suite("tiny 16x16 b4", model, x, t, steps=4, samples=4, per_call=16,
                  window=8, stride=4, layer="relu2_1", torch_layer="relu2_1",
                  repeats=1, warmup=1)
  # Each model's rows in a process of its own (`bench_common.isolated`).
  return [*bench_common.isolated(_vgg16_rows, repeats, steps, samples,
                                 captum_warmup),
          *bench_common.isolated(_cifar_rows, repeats, steps, samples,
                                 captum_warmup)]


def _vgg16_rows(repeats, steps, samples, captum_warmup):
  model, x, t = _setup("vgg16", 4, (224, 224))
  # 16 images of 224x224 per call keeps VGG16's backward under ~1 GB.
  return _suite("vgg16 224 b4", model, x, t, steps=steps, samples=samples,
                per_call=16, window=64, stride=32, layer="relu5_3",
                torch_layer="relu5_3", repeats=repeats, warmup=captum_warmup)


def _cifar_rows(repeats, steps, samples, captum_warmup):
  model, x, t = _setup("cifar_vgg", 256, (32, 32))
  return _suite("cifar_vgg b256", model, x, t, steps=steps, samples=samples,
                per_call=256, window=8, stride=4, layer="relu4_1",
                torch_layer="relu4_1", repeats=repeats, warmup=captum_warmup)
