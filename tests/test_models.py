"""Models: torchvision equality after conversion, taps, parameter counts,
checkpoint errors, the shipped CIFAR model's accuracy."""

import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from absl.testing import parameterized

from cnnviz_jax import models
from cnnviz_jax.models import checkpoint, core, resnet, zoo
from weights_conversion import convert_torchvision as ct
from weights_conversion import torch_reference as tr

torch.set_num_threads(2)

# Pinned parameter counts (BatchNorm running mean/var count as parameters here,
# since they live in the params pytree; torchvision's own counts exclude them:
# vgg16_bn has 138,365,992 torch parameters + 8,448 statistics).
PARAM_COUNTS = {
    "alexnet": 61_100_840,
    "vgg11": 132_863_336,
    "vgg13": 133_047_848,
    "vgg16": 138_357_544,
    "vgg19": 143_667_240,
    "vgg11_bn": 132_874_344,
    "vgg13_bn": 133_059_624,
    "vgg16_bn": 138_374_440,
    "vgg19_bn": 143_689_256,
    "cifar_vgg": 2_160_522,
    "tiny": 1_834,
    # torchvision's own counts (BatchNorm statistics excluded, as torch does).
    "resnet18": 11_689_512,
    "resnet50": 25_557_032,
}


def test_every_registered_model_is_pinned():
  assert set(PARAM_COUNTS) == set(models.names())


@pytest.mark.parametrize("name", sorted(PARAM_COUNTS))
def test_param_counts(name):
  if name in resnet.ARCHITECTURES:
    assert resnet.count(name) == PARAM_COUNTS[name]
    return
  s = models.spec(name)
  shapes = core.param_shapes(s.layers, s.input_size)
  assert sum(int(np.prod(v)) for v in shapes.values()) == PARAM_COUNTS[name]


def _torch_taps(net, x_nchw):
  """Output of every module of `features` and `classifier`, and the logits."""
  acts, hooks = {}, []
  for name, mod in net.named_modules():
    if name.count(".") == 1 or name == "avgpool":
      # clone: torchvision's ReLUs are in-place and would overwrite conv outputs
      hooks.append(mod.register_forward_hook(
          lambda m, i, o, n=name: acts.__setitem__(n, o.detach().clone())))
  with torch.no_grad():
    logits = net(x_nchw).numpy()
  for h in hooks:
    h.remove()
  return logits, {k: (v.numpy().transpose(0, 2, 3, 1) if v.ndim == 4 else v.numpy())
                  for k, v in acts.items()}


def _relerr(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return np.abs(a - b).max() / max(np.abs(b).max(), 1e-12)


NON_SQUARE_ARCHS = ("vgg11", "vgg11_bn", "alexnet")


@pytest.mark.parametrize("arch", zoo.IMAGENET_ARCHITECTURES)
def test_conversion_matches_torchvision(arch, tmp_path):
  net = tr.torchvision_model(arch, seed=0)
  path = str(tmp_path / f"{arch}.safetensors")
  sd_path = str(tmp_path / f"{arch}.pth")
  torch.save(net.state_dict(), sd_path)
  ct.convert(arch, path, sd_path)
  model = models.load(arch, path)
  assert len(model.class_names) == 1000 and model.class_names[0] == "tench"
  if arch not in NON_SQUARE_ARCHS:
    # The same layer kinds as vgg11/vgg11_bn, deeper: what can differ is the
    # mapping of keys and shapes, checked tensor by tensor without a forward
    # pass (which the three archs above cover numerically).
    sd = net.state_dict()
    torch_leaf = {"scale": "weight", "bias": "bias", "mean": "running_mean",
                  "var": "running_var", "kernel": "weight"}
    for layer in model.layers:
      for leaf, v in model.params.get(layer.name, {}).items():
        t = sd[f"{layer.alias}.{torch_leaf[leaf]}"].numpy()
        if layer.kind == "conv" and leaf == "kernel":
          t = t.transpose(2, 3, 1, 0)
        elif layer.kind == "dense" and leaf == "kernel":
          if layer.name == "fc6":  # rows from NCHW to NHWC flatten order
            t = t.reshape(-1, 512, 7, 7).transpose(0, 2, 3, 1).reshape(t.shape[0], -1)
          t = t.T
        np.testing.assert_array_equal(np.asarray(v), t, err_msg=f"{arch} {layer.name}/{leaf}")
    assert sum(len(v) for v in model.params.values()) == len(
        [k for k in sd if not k.endswith("num_batches_tracked")])
    return
  normalize = tr.Normalize(model.mean, model.std)
  apply = jax.jit(model.apply, static_argnames=("taps",))
  # A non-square size checks the adaptive pooling and the flatten order.
  sizes = [(224, 224), (160, 192)]
  for hw in sizes:
    x = np.random.RandomState(1).rand(1, *hw, 3).astype(np.float32)
    logits_t, taps_t = _torch_taps(net, normalize(tr.nhwc_to_nchw(x)))
    logits_j, taps_j = apply(model.params, jnp.asarray(x), taps=tuple(taps_t))
    assert _relerr(logits_j, logits_t) <= 1e-4, (arch, hw)
    assert set(taps_t) == set(model.aliases) - {"avgpool"} | {"avgpool"}
    for name, act in taps_t.items():
      if arch == "alexnet" and name == "classifier.0":
        # AlexNet's first dropout sees the flattened features: torch flattens
        # NCHW, this library NHWC (fc6's rows are permuted to match).
        act = act.reshape(1, 256, 6, 6).transpose(0, 2, 3, 1).reshape(1, -1)
      err = _relerr(taps_j[name], act)
      assert err <= 1e-4, (arch, hw, name, err)


def test_conversion_rejects_bad_state_dicts():
  net = tr.torchvision_model("vgg11", seed=0)
  sd = dict(net.state_dict())
  sd.pop("features.0.bias")
  sd["features.99.weight"] = torch.zeros(3)
  sd["classifier.6.weight"] = torch.zeros(10, 4096)
  with pytest.raises(ValueError) as e:
    ct.convert_state_dict("vgg11", sd)
  msg = str(e.value)
  assert "conv1_1/bias" in msg and "features.99.weight" in msg and "fc8/kernel" in msg


def test_failed_conversion_writes_nothing(tmp_path):
  sd = dict(tr.torchvision_model("alexnet", seed=0).state_dict())
  sd.pop("classifier.6.bias")
  sd_path, out = str(tmp_path / "a.pth"), str(tmp_path / "a.safetensors")
  torch.save(sd, sd_path)
  with pytest.raises(ValueError, match="fc8/bias"):
    ct.convert("alexnet", out, sd_path)
  assert os.listdir(tmp_path) == ["a.pth"]


def test_taps_aliases_and_early_stop():
  model = models.load("vgg11", key=jax.random.PRNGKey(0))
  x = jnp.asarray(np.random.RandomState(0).rand(2, 64, 64, 3).astype(np.float32))
  logits, taps = model.apply(model.params, x, taps=("relu2_1", "features.4", "fc7"))
  assert logits.shape == (2, 1000)
  assert taps["relu2_1"].shape == (2, 32, 32, 128)
  np.testing.assert_array_equal(taps["relu2_1"], taps["features.4"])
  none, early = model.apply(model.params, x, taps=("relu2_1",), logits=False)
  assert none is None
  np.testing.assert_array_equal(early["relu2_1"], taps["relu2_1"])
  # Early stop really stops: the traced computation has no fully connected layer.
  jaxpr = jax.make_jaxpr(lambda p, x: model.apply(p, x, taps=("relu2_1",),
                                                  logits=False))(model.params, x)
  # (Convolutions may run as matrix products too: look for fc6's output.)
  assert "f32[2,4096]" not in str(jaxpr)
  full = jax.make_jaxpr(lambda p, x: model.apply(p, x))(model.params, x)
  assert "f32[2,4096]" in str(full)


def test_relu_is_swappable():
  model = models.load("tiny", key=jax.random.PRNGKey(0))
  x = jnp.asarray(np.random.RandomState(0).rand(3, 16, 16, 3).astype(np.float32))
  ref = model(x, taps=("relu2_1",))
  leaky = model(x, taps=("relu2_1",), relu=lambda v: jax.nn.leaky_relu(v, 0.5))
  same = model(x, taps=("relu2_1",), relu=lambda v: jnp.maximum(v, 0.0))
  chex.assert_trees_all_close(same, ref, rtol=1e-6)
  assert float(leaky[1]["relu2_1"].min()) < 0.0 <= float(ref[1]["relu2_1"].min())


@pytest.mark.parametrize("name", ["tiny", "cifar_vgg"])
def test_any_input_size(name):
  model = models.load(name, key=jax.random.PRNGKey(0))
  for hw in [(model.min_size, model.min_size), (45, 77)]:
    x = jnp.full((1, *hw, 3), 0.5, jnp.float32)
    assert model(x)[0].shape == (1, 10)


class ApplyVariantsTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters("tiny", "cifar_vgg")
  def test_jit_equals_no_jit(self, name):
    model = models.load(name, key=jax.random.PRNGKey(1))
    x = jnp.asarray(np.random.RandomState(0).rand(2, 32, 32, 3).astype(np.float32))
    out = self.variant(lambda p, x: model.apply(p, x, taps=("relu1_1",)))(model.params, x)
    ref = model.apply(model.params, x, taps=("relu1_1",))
    chex.assert_trees_all_close(out, ref, rtol=1e-5, atol=1e-6)


def test_bad_inputs_raise_clear_errors():
  model = models.load("tiny", key=jax.random.PRNGKey(0))
  good = np.zeros((1, 16, 16, 3), np.float32)
  cases = [
      (good[0], "rank 4"),
      (np.zeros((1, 16, 16, 1), np.float32), "3 RGB channels"),
      (good.astype(np.uint8), "float32"),
      (good + 2.0, r"values in \[0, 1\]"),
      (np.zeros((1, 2, 2, 3), np.float32), "at least 4x4"),
  ]
  for x, msg in cases:
    with pytest.raises(ValueError, match=msg):
      model(jnp.asarray(x))
  with pytest.raises(ValueError, match="unknown layer 'conv9'.*valid names: conv1_1"):
    model(jnp.asarray(good), taps=("conv9",))
  with pytest.raises(ValueError, match="unknown model 'vgg17'.*vgg16.*resnet18, resnet50"):
    models.load("vgg17")
  with pytest.raises(ValueError, match="ships no weights"):
    models.load("vgg16")
  with pytest.raises(ValueError, match="at least 63x63"):
    m = models.load("alexnet", key=jax.random.PRNGKey(0))
    jax.eval_shape(m, jax.ShapeDtypeStruct((1, 40, 40, 3), jnp.float32))


def test_checkpoint_roundtrip_and_mismatch(tmp_path):
  model = models.load("tiny", key=jax.random.PRNGKey(0))
  path = str(tmp_path / "tiny.safetensors")
  checkpoint.save(path, model.params, {"arch": "tiny", "class_names": list("abcdefghij")})
  loaded = models.load("tiny", path)
  chex.assert_trees_all_equal(loaded.params, model.params)
  assert loaded.class_names == tuple("abcdefghij")
  bad = core.flatten(model.params)
  bad["extra/kernel"] = np.zeros(2, np.float32)
  bad["fc7/kernel"] = np.zeros((3, 3), np.float32)
  del bad["conv1_1/bias"]
  checkpoint.save(path, core.unflatten(bad))
  with pytest.raises(ValueError) as e:
    models.load("tiny", path)
  for s in ["missing keys (1): ['conv1_1/bias']", "extra/kernel", "fc7/kernel: got (3, 3)"]:
    assert s in str(e.value)
  (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
  with pytest.raises(ValueError, match="cannot read"):
    models.load("tiny", str(tmp_path / "junk.safetensors"))
  with pytest.raises(FileNotFoundError):
    models.load("tiny", str(tmp_path / "absent.safetensors"))


def test_shipped_cifar_model_offline():
  model = models.load("cifar_vgg")
  assert model.class_names == zoo.CIFAR10_CLASSES
  size = os.path.getsize(models.SHIPPED_WEIGHTS["cifar_vgg"])
  assert size <= 10 * 2**20
  meta = checkpoint.read_metadata(models.SHIPPED_WEIGHTS["cifar_vgg"])
  assert meta["arch"] == "cifar_vgg" and json.loads(meta["metrics"])["epochs"] > 0


def test_shipped_cifar_model_accuracy(cifar_test_set):
  """Top-1 accuracy of the shipped weights on all 10,000 CIFAR-10 test images."""
  x, y = cifar_test_set
  assert len(y) == 10_000
  model = models.load("cifar_vgg")
  predict = jax.jit(lambda p, x: model.apply(p, x.astype(jnp.float32) / 255.0)[0].argmax(-1))
  preds = np.concatenate([np.asarray(predict(model.params, x[i:i + 1000]))
                          for i in range(0, len(x), 1000)])
  accuracy = float((preds == y).mean())
  print(f"cifar_vgg test accuracy: {accuracy:.4f}")
  assert accuracy >= 0.88


def test_torch_reference_matches_cifar_model():
  model = models.load("cifar_vgg")
  net = tr.to_torch(model)
  x = np.random.RandomState(0).rand(4, 40, 48, 3).astype(np.float32)
  with torch.no_grad():
    ref = net(tr.nhwc_to_nchw(x)).numpy()
  assert _relerr(model(jnp.asarray(x))[0], ref) <= 1e-5


def _torch_layer(kind):
  """(torch module, its cnnviz_jax Layer) for each layer kind, same weights."""
  tnn = torch.nn
  return {
      "conv": (tnn.Conv2d(3, 4, 3, padding=1), core.conv("c", 4)),
      "bn": (tnn.BatchNorm2d(3).eval(), core.Layer("b", "bn")),
      "relu": (tnn.ReLU(), core.relu("r")),
      "maxpool": (tnn.MaxPool2d(2, 2), core.maxpool("p")),
      "maxpool3": (tnn.MaxPool2d(3, 2), core.maxpool("p", 3, 2)),
      "adaptive_avgpool": (tnn.AdaptiveAvgPool2d((2, 3)),
                           core.Layer("a", "adaptive_avgpool", "", (("size", (2, 3)),))),
      "global_avgpool": (lambda t: t.mean(dim=(2, 3)), core.Layer("g", "global_avgpool")),
      "flatten": (tnn.Flatten(), core.Layer("f", "flatten")),
      "dropout": (tnn.Dropout(0.5).eval(), core.Layer("d", "dropout")),
  }[kind]


class NaNPropagationTest(chex.TestCase):
  """NaN propagates through every layer kind exactly where torch's does."""

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters("conv", "bn", "relu", "maxpool", "maxpool3",
                            "adaptive_avgpool", "global_avgpool", "flatten",
                            "dropout", "dense")
  def test_nan_like_torch(self, kind):
    x = np.random.RandomState(0).rand(2, 7, 6, 3).astype(np.float32)
    x[0, 1, 1, 2] = np.nan
    x[1, 4, 3, 0] = np.nan
    if kind == "dense":
      layer, tmod = core.dense("fc", 5), torch.nn.Linear(3, 5)
      x = x.reshape(-1, 3)  # [84, 3] rows, two hold NaN
      xt = torch.from_numpy(x)
    else:
      tmod, layer = _torch_layer(kind)
      xt = tr.nhwc_to_nchw(x)
    params = core.SequentialNet((layer,)).init(
        jax.random.PRNGKey(0), jnp.zeros((1, *x.shape[1:]))).get("params", {})
    if kind in ("conv", "dense"):  # same weights in both
      k = np.asarray(params[layer.name]["kernel"])
      tmod.weight.data = torch.from_numpy(
          k.transpose(3, 2, 0, 1).copy() if kind == "conv" else k.T.copy())
      tmod.bias.data = torch.from_numpy(np.array(params[layer.name]["bias"]))
    with torch.no_grad():
      ref = tmod(xt).numpy()
    ref = ref.transpose(0, 2, 3, 1) if ref.ndim == 4 else ref
    if kind == "flatten":  # torch flattens NCHW, this library NHWC
      ref = x.reshape(2, -1)
    out = self.variant(lambda p, x: core.SequentialNet((layer,)).apply(
        {"params": p}, x)[0])(params, jnp.asarray(x))
    assert np.isnan(ref).any()
    np.testing.assert_array_equal(np.isnan(out), np.isnan(ref))
    np.testing.assert_allclose(np.nan_to_num(out), np.nan_to_num(ref),
                               rtol=1e-5, atol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_nan_weights_give_nan_logits(self):
    model = models.load("tiny", key=jax.random.PRNGKey(0))
    params = jax.tree_util.tree_map(lambda a: a, model.params)
    params["conv1_1"]["kernel"] = params["conv1_1"]["kernel"].at[0, 0, 0, 0].set(jnp.nan)
    x = jnp.full((1, 16, 16, 3), 0.5)
    logits = self.variant(lambda p, x: model.apply(p, x)[0])(params, x)
    assert np.isnan(np.asarray(logits)).all()


def test_max_pool_2x2_nan_regression():
  x = jnp.array([[[[1.], [np.nan]], [[.5], [2.]]]])
  assert np.isnan(float(core.max_pool(x, 2, 2)[0, 0, 0, 0]))
  # Ties still send the whole gradient to the first maximum (torch's rule).
  g = jax.grad(lambda x: core.max_pool(x, 2, 2).sum())(jnp.ones((1, 2, 2, 1)))
  np.testing.assert_array_equal(g[0, :, :, 0], [[1.0, 0.0], [0.0, 0.0]])


def test_weights_with_nan_or_inf_fail_naming_the_tensor(tmp_path):
  model = models.load("tiny", key=jax.random.PRNGKey(0))
  flat = {k: np.array(v) for k, v in core.flatten(model.params).items()}
  flat["fc6/bias"][3] = np.inf
  flat["conv2_1/kernel"][0, 0, 0, 0] = np.nan
  path = str(tmp_path / "bad.safetensors")
  checkpoint.save(path, core.unflatten(flat), {"arch": "tiny"})
  with pytest.raises(ValueError, match=r"bad.safetensors: tensor 'conv2_1/kernel' "
                     "holds 1 NaN"):
    models.load("tiny", path)


def test_truncated_weights_and_bad_class_names(tmp_path):
  model = models.load("tiny", key=jax.random.PRNGKey(0))
  path = tmp_path / "t.safetensors"
  checkpoint.save(str(path), model.params, {"arch": "tiny"})
  (tmp_path / "cut.safetensors").write_bytes(path.read_bytes()[:-100])
  with pytest.raises(ValueError, match=r"cut.safetensors.*truncated, corrupt.*again"):
    models.load("tiny", str(tmp_path / "cut.safetensors"))
  for meta, msg in [("[not json", "not valid JSON"), ('{"a": 1}', "list of strings"),
                    ("[1, 2]", "list of strings")]:
    checkpoint.save(str(path), model.params, {"arch": "tiny", "class_names": meta})
    with pytest.raises(ValueError, match=f"t.safetensors: metadata class_names.*{msg}"):
      models.load("tiny", str(path))


def test_checks_before_jax():
  model = models.load("tiny", key=jax.random.PRNGKey(0))
  x = jnp.zeros((1, 16, 16, 3))
  for taps in (None, 3, ("relu1_1", None)):
    with pytest.raises(ValueError, match="taps must be a layer name or a tuple"):
      model.apply(model.params, x, taps=taps)
  for key in (0, np.zeros(2, np.int32), jax.random.split(jax.random.PRNGKey(0))):
    with pytest.raises(ValueError, match="key must be one JAX PRNG key"):
      models.load("tiny", key=key)
  with pytest.raises(ValueError, match="key must be one JAX PRNG key"):
    models.load_or_init("tiny", key=None)
  assert models.load("tiny", key=jax.random.key(0)).name == "tiny"
  from cnnviz_jax.models import predict
  with pytest.raises(ValueError, match="channels must be integer"):
    predict.channel_means(model, x, "relu1_1", [1.7])
  with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
    predict.logits(model, x, batch_size=0)


def test_logits_in_equal_batches_compile_once():
  from cnnviz_jax.models import predict
  model = models.load("tiny", key=jax.random.PRNGKey(0))
  x = jnp.asarray(np.random.RandomState(3).rand(7, 16, 16, 3).astype(np.float32))
  full = model(x)[0]
  predict._logits.clear_cache()
  out = predict.logits(model, x, batch_size=3)   # 3 x 3, not 3 + 3 + 1
  assert predict._logits._cache_size() == 1
  np.testing.assert_allclose(out, full, rtol=1e-5, atol=1e-6)
  assert predict.logits(model, x[:0], batch_size=3).shape == (0, 10)


def test_conversion_refuses_to_overwrite(tmp_path):
  sd_path, out = str(tmp_path / "a.pth"), tmp_path / "a.safetensors"
  torch.save(tr.torchvision_model("alexnet", seed=0).state_dict(), sd_path)
  out.write_bytes(b"precious")
  with pytest.raises(FileExistsError, match="pass --overwrite"):
    ct.convert("alexnet", str(out), sd_path)
  assert out.read_bytes() == b"precious"
  ct.convert("alexnet", str(out), sd_path, overwrite=True)
  assert models.load("alexnet", str(out)).name == "alexnet"
