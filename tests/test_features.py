"""cnnviz_jax.features: receptive fields against the analytic values and a
brute-force gradient check, streaming top-k and chunked nearest neighbours
against full sorts, PCA against numpy's SVD, the t-SNE grid, bad inputs, the
pixel- vs feature-space neighbour gap on the shipped CIFAR model, and the
launchers end to end on their smoke configs."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnviz_jax import features as F
from cnnviz_jax import models
from cnnviz_jax.models import zoo
from conftest import cifar_model, require_cifar, tiny_model


def _images(n, hw=(16, 16), seed=0):
  return np.random.RandomState(seed).rand(n, *hw, 3).astype(np.float32)


# ----------------------------------------------------------------- receptive


@pytest.mark.parametrize("arch,layer,size,stride", [
    ("vgg16", "conv5_3", 196, 16), ("vgg16", "features.28", 196, 16),
    ("vgg16", "pool5", 212, 32), ("alexnet", "conv5", 163, 16),
    ("alexnet", "conv1", 11, 4), ("vgg11", "conv1_1", 3, 1)])
def test_receptive_field_analytic(arch, layer, size, stride):
  model = models.build(arch, None)  # only the architecture is read
  field = F.receptive_field(model, layer)
  assert (field.size, field.stride) == (size, stride)


@pytest.mark.parametrize("arch", tuple(zoo.ARCHITECTURES))
def test_receptive_box_matches_field_for_every_zoo_model(arch):
  """Every sequential zoo model (the wrapped ResNets have no layer list)."""
  model = models.build(arch, None)
  hw = model.input_size
  for layer in F.spatial_layers(model):
    field = F.receptive_field(model, layer)
    h, w = F._receptive.layer_hw(model, layer, hw)
    ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    boxes = F.receptive_boxes(model, layer, ys, xs, hw)
    lo_y, lo_x = field.offset + ys * field.stride, field.offset + xs * field.stride
    want = np.stack([lo_y, lo_x, lo_y + field.size, lo_x + field.size], -1)
    want = np.clip(want, 0, [hw[0], hw[1], hw[0], hw[1]])
    np.testing.assert_array_equal(boxes[..., :2], want[..., :2])
    # Exact boxes may end earlier where floor-mode pools drop trailing rows.
    assert (boxes[..., 2:] <= want[..., 2:]).all()


def _gradient_supports(model, layer, units, hw, samples=8):
  """For each unit (y, x): the bounding box `(y0, x0, y1, x1)` of the pixels
  whose gradient is non-zero for the unit summed over channels, over random
  images (ReLUs as identity so that no unit is dead). One compilation per
  layer: the unit's position is a traced index."""
  @jax.jit
  def grad(images, y, x):
    def unit(images):
      _, t = model.apply(model.params, images, taps=(layer,), logits=False,
                         relu=lambda v: v)
      return t[layer][:, y, x, :].sum()
    return jax.grad(unit)(images)
  boxes = []
  for i, (y, x) in enumerate(units):
    g = grad(jnp.asarray(_images(samples, hw, seed=i)), y, x)
    nz = np.argwhere(np.abs(np.asarray(g)).sum(axis=(0, 3)) > 0)
    boxes.append((*nz.min(0), *(nz.max(0) + 1)))
  return boxes


@pytest.mark.parametrize("hw", [(16, 16), (15, 13)])
def test_receptive_box_equals_gradient_support_tiny(hw):
  model = tiny_model()
  for layer in ("conv1_1", "pool1", "relu2_1", "pool2"):
    h, w = F._receptive.layer_hw(model, layer, hw)
    units = sorted({(0, 0), (h // 2, w // 2), (h - 1, w - 1), (0, w - 1)})
    want = _gradient_supports(model, layer, units, hw)
    for (y, x), box in zip(units, want):
      assert F.receptive_box(model, layer, y, x, hw) == box, (layer, y, x)


def test_receptive_box_equals_gradient_support_cifar_vgg():
  model = cifar_model()
  for layer, (y, x) in (("conv3_2", (3, 4)), ("conv4_1", (0, 3))):
    assert [F.receptive_box(model, layer, y, x, (32, 32))] == _gradient_supports(
        model, layer, [(y, x)], (32, 32), samples=4)


def test_receptive_field_adaptive_pool():
  vgg = models.build("vgg16", None)
  assert F.receptive_field(vgg, "avgpool") == F.receptive_field(vgg, "pool5")
  assert F.receptive_field(vgg, "avgpool", (448, 448)).stride == 64  # 14 -> 7
  with pytest.raises(ValueError, match="unequal size.*receptive_box"):
    F.receptive_field(vgg, "avgpool", (256, 256))      # 8 -> 7 bins
  y0, _, y1, _ = F.receptive_box(vgg, "avgpool", 0, 0, (256, 256))
  assert (y0, y1) == (0, F.receptive_box(vgg, "pool5", 1, 1, (256, 256))[2])


def test_receptive_field_errors():
  model = tiny_model()
  with pytest.raises(ValueError, match="spatial extent.*Spatial layers: conv1_1"):
    F.receptive_field(model, "fc6")
  with pytest.raises(ValueError, match="unknown layer"):
    F.receptive_field(model, "conv9")
  with pytest.raises(ValueError, match="out of range"):
    F.receptive_box(model, "pool2", 4, 0, (16, 16))


# ----------------------------------------------------- filters, activations


def test_filters():
  model = tiny_model()
  w = F.filters(model)
  assert w.shape == (8, 3, 3, 3)
  np.testing.assert_allclose(w.min(axis=(1, 2, 3)), 0, atol=1e-6)
  np.testing.assert_allclose(w.max(axis=(1, 2, 3)), 1, atol=1e-6)
  k = np.asarray(model.params["conv1_1"]["kernel"])[..., 2]
  np.testing.assert_allclose(w[2], (k - k.min()) / np.ptp(k), atol=1e-6)
  assert F.filters(model, "conv2_1").shape == (16, 8, 3, 3)
  with pytest.raises(ValueError, match="conv layer.*conv1_1, conv2_1"):
    F.filters(model, "relu1_1")
  tile = F.mosaic(w, ncols=4, pad=1)
  assert tile.shape == (2 * 4 + 1, 4 * 4 + 1, 3)


def test_activation_maps():
  model, x = tiny_model(), _images(1)
  maps = F.activation_maps(model, x[0], "relu1_1")
  _, t = model.apply(model.params, x, taps=("relu1_1",), logits=False)
  np.testing.assert_allclose(maps, np.moveaxis(np.asarray(t["relu1_1"][0]), -1, 0))
  top = F.activation_maps(model, x, "relu1_1", top=3)
  order = F.strongest_channels(maps, 3)
  np.testing.assert_array_equal(top, maps[order])
  assert (np.diff(top.mean(axis=(1, 2))) <= 0).all()
  with pytest.raises(ValueError, match="spatial extent"):
    F.activation_maps(model, x[0], "fc6")
  with pytest.raises(ValueError, match="top must be in 1..8"):
    F.activation_maps(model, x[0], "relu1_1", top=9)
  with pytest.raises(ValueError, match=r"\[0, 1\]"):
    F.activation_maps(model, x[0] * 255, "relu1_1")


def test_extract_streams_arrays_iterators_and_uint8():
  model = tiny_model()
  x8 = (np.random.RandomState(1).rand(23, 16, 16, 3) * 255).astype(np.uint8)
  x = x8.astype(np.float32) / 255
  _, t = model.apply(model.params, x, taps=("relu2_1", "fc6"), logits=False)
  for layer in ("relu2_1", "fc6"):
    want = np.asarray(t[layer]).reshape(23, -1)
    np.testing.assert_allclose(F.extract(model, x, layer, batch_size=5), want,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(F.extract(model, x8, layer, batch_size=8), want,
                               rtol=1e-5, atol=1e-6)
    chunks = iter([x[:3], x[3:4], x[4:23]])
    np.testing.assert_allclose(F.extract(model, chunks, layer, batch_size=7),
                               want, rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="no images"):
    F.extract(model, iter([]), "fc6")


# ---------------------------------------------------------------- top-k


def _reference_top(acts, channels, k, distinct):
  """Full stable sort of `acts [N, h, w, C]` per channel."""
  n, h, w, _ = acts.shape
  out = []
  for c in channels:
    a = acts[..., c].reshape(n, h * w)
    if distinct:
      pos = a.argmax(1)
      vals = a.max(1)
      order = np.argsort(-vals, kind="stable")[:k]
      out.append((vals[order], order, pos[order] // w, pos[order] % w))
    else:
      flat = a.ravel()
      order = np.argsort(-flat, kind="stable")[:k]
      out.append((flat[order], order // (h * w), order % (h * w) // w,
                  order % w))
  return [np.stack(v) for v in zip(*out)]


@pytest.mark.parametrize("distinct", [True, False])
def test_top_activations_equal_full_sort_for_any_batch_size(distinct):
  model, x = tiny_model(), _images(37)
  channels = [0, 5, 15]
  _, t = model.apply(model.params, x, taps=("relu2_1",), logits=False)
  want = _reference_top(np.asarray(t["relu2_1"]), channels, 6, distinct)
  for batch in (1, 7, 16, 64):
    got = F.top_activations(model, x, "relu2_1", channels, k=6,
                            batch_size=batch, distinct_images=distinct)
    np.testing.assert_allclose(got.values, want[0], rtol=1e-5)
    for a, b in zip((got.image_index, got.y, got.x), want[1:]):
      np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(got.channels, channels)


def test_patches_are_receptive_field_boxes():
  model, x = tiny_model(), _images(20)
  top = F.top_activations(model, x, "relu2_1", [1, 2], k=4, batch_size=8)
  crops = F.patches(model, x, top, fill=-1.0)
  field = F.receptive_field(model, "relu2_1")
  assert crops.shape == (2, 4, field.size, field.size, 3)
  for c, j in np.ndindex(2, 4):
    y0, x0, y1, x1 = F.receptive_box(model, "relu2_1", top.y[c, j],
                                     top.x[c, j], (16, 16))
    inside = crops[c, j][(crops[c, j] >= 0).all(-1)]
    np.testing.assert_array_equal(
        inside, x[top.image_index[c, j], y0:y1, x0:x1].reshape(-1, 3))
    assert len(inside) == (y1 - y0) * (x1 - x0)


def test_top_activations_errors():
  model, x = tiny_model(), _images(5)
  with pytest.raises(ValueError, match="spatial extent"):
    F.top_activations(model, x, "fc6", [0], k=2)
  with pytest.raises(ValueError, match="k=6 is larger than the dataset"):
    F.top_activations(model, x, "relu2_1", [0], k=6)
  with pytest.raises(ValueError, match="larger than the dataset"):
    F.top_activations(model, iter([x]), "relu2_1", [0], k=6)
  with pytest.raises(ValueError, match=r"channels \[16\] out of range.*0..15"):
    F.top_activations(model, x, "relu2_1", [3, 16], k=2)


# ------------------------------------------------------- nearest neighbours


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_nearest_neighbors_equal_brute_force_for_any_chunk(metric):
  rng = np.random.RandomState(0)
  db, q = rng.randn(203, 24).astype(np.float32), rng.randn(31, 24).astype(np.float32)
  if metric == "l2":
    full = np.sqrt(((q[:, None] - db[None]) ** 2).sum(-1))
  else:
    unit = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)
    full = 1 - unit(q) @ unit(db).T
  want_i = np.argsort(full, axis=1, kind="stable")[:, :7]
  want_d = np.take_along_axis(full, want_i, 1)
  for chunk, qchunk in ((1, 31), (7, 4), (64, 1), (203, 1024), (4096, 10)):
    d, i = F.nearest_neighbors(q, db, k=7, metric=metric, chunk_size=chunk,
                               query_chunk_size=qchunk)
    np.testing.assert_array_equal(i, want_i)
    np.testing.assert_allclose(d, want_d, rtol=1e-4, atol=1e-4)


def test_nearest_neighbors_errors():
  db = np.zeros((10, 4), np.float32)
  with pytest.raises(ValueError, match=r"k must be an int in 1..10"):
    F.nearest_neighbors(db, db, k=11)
  with pytest.raises(ValueError, match="accepted: l2, cosine"):
    F.nearest_neighbors(db, db, k=1, metric="l1")
  with pytest.raises(ValueError, match="4 dimensions, the database 5"):
    F.nearest_neighbors(db, np.zeros((10, 5)), k=1)
  with pytest.raises(ValueError, match="flatten images"):
    F.nearest_neighbors(db, np.zeros((10, 2, 2)), k=1)


def test_precision_at_k():
  assert F.precision_at_k([[0, 1], [2, 2]], [0, 1, 1], [0, 1]) == 0.75


def test_feature_neighbours_share_class_far_more_than_pixel_neighbours():
  """cifar_vgg, 200 test queries against 2,000 training images (the full
  1,000 x 50,000 figure is in the README, from experiments/neighbors.py)."""
  from cnnviz_jax.data import load_cifar10
  path = require_cifar()
  model = cifar_model()
  train_x, train_y = load_cifar10(path, "train", limit=200)
  test_x, test_y = load_cifar10(path, "test", limit=20)
  p = {}
  for space in ("pixel", "feature"):
    if space == "pixel":
      db, q = train_x.reshape(len(train_x), -1), test_x.reshape(len(test_x), -1)
    else:
      db = F.extract(model, train_x, "relu7")
      q = F.extract(model, test_x, "relu7")
    _, idx = F.nearest_neighbors(q, db, k=5)
    p[space] = F.precision_at_k(idx, train_y, test_y)
  assert p["pixel"] < 0.4 and p["feature"] > 0.75, p
  assert p["feature"] - p["pixel"] > 0.4, p


# ---------------------------------------------------------------- embedding


def test_pca_equals_numpy_svd_up_to_sign():
  x = np.random.RandomState(0).randn(50, 12).astype(np.float32) * np.arange(1, 13)
  got = F.pca(x, 4)
  xc = x - x.mean(0)
  u, s, vt = np.linalg.svd(xc.astype(np.float64), full_matrices=False)
  signs = np.sign((got.components * vt[:4]).sum(1))
  assert set(signs) <= {-1.0, 1.0}
  np.testing.assert_allclose(got.components, vt[:4] * signs[:, None], atol=1e-4)
  np.testing.assert_allclose(got.coords, u[:, :4] * s[:4] * signs, rtol=1e-4,
                             atol=1e-3)
  np.testing.assert_allclose(got.explained_variance, s[:4] ** 2 / 49, rtol=1e-4)
  with pytest.raises(ValueError, match=r"dims must be an int in 1..12"):
    F.pca(x, 13)


def test_tsne_grid_fills_every_cell_once():
  rng = np.random.RandomState(0)
  centres = rng.randn(3, 20) * 8
  x = (centres[np.arange(60) % 3] + rng.randn(60, 20)).astype(np.float32)
  xy = F.tsne(x, key=jax.random.PRNGKey(0), perplexity=10, max_iter=250)
  assert xy.shape == (60, 2) and np.isfinite(xy).all()
  for rows, cols in ((6, 10), (5, 7)):    # as many points as cells, and fewer
    cells = F.grid_layout(xy, rows, cols)
    assert cells.shape == (rows, cols)
    assert len(np.unique(cells)) == rows * cols and cells.max() < 60
  with pytest.raises(ValueError, match="needs at least 64 points"):
    F.grid_layout(xy, 8, 8)


def test_grid_layout_keeps_a_grid_in_place():
  ys, xs = np.meshgrid(np.arange(4), np.arange(5), indexing="ij")
  coords = np.stack([xs.ravel(), ys.ravel()], 1).astype(float)
  perm = np.random.RandomState(0).permutation(20)
  cells = F.grid_layout(coords[perm], 4, 5)
  np.testing.assert_array_equal(perm[cells], np.arange(20).reshape(4, 5))


# ---------------------------------------------------------------- launchers


LAUNCHERS = ("filters", "activations", "max_patches", "neighbors", "embedding")
OUTPUTS = {"filters": ["filters.png"],
           "activations": ["image.png", "activations_relu1_1.png"],
           "max_patches": ["patches.png"], "neighbors": ["neighbors.png"],
           "embedding": ["scatter.png", "grid.png", "coords.npy"]}


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_smoke(name, tmp_path):
  """Each launcher's run() on its smoke config, in-process (the flags are
  defined only under __main__)."""
  import importlib
  import json
  launcher = importlib.import_module(f"experiments.{name}")
  config = importlib.import_module(f"experiments.configs.{name}").get_config("smoke")
  metrics = launcher.run(config, str(tmp_path))
  assert json.load(open(tmp_path / "metrics.json")) == json.loads(json.dumps(metrics))
  assert json.load(open(tmp_path / "config.json"))["model"] == "tiny"
  for f in OUTPUTS[name]:
    assert (tmp_path / f).stat().st_size > 100, f


def test_neighbors_launcher_on_an_image_folder(tmp_path):
  """A folder without labels is searched against itself, minus the query."""
  from cnnviz_jax import viz
  from experiments import neighbors
  from experiments.configs import neighbors as cfg
  folder = tmp_path / "images"
  for i, image in enumerate(_images(7, (20, 20))):
    viz.save_image(str(folder / f"{i}.png"), image)
  config = cfg.get_config("smoke")
  config.data, config.num_queries, config.num_database = str(folder), 3, 7
  metrics = neighbors.run(config, str(tmp_path / "out"))
  assert metrics["num_database"] == 7 and "precision_at_3_pixel" not in metrics
  assert neighbors._drop_self(np.array([[0, 4, 2], [3, 1, 5]]), 2).tolist() == [
      [4, 2], [3, 5]]


def test_launcher_data_errors(tmp_path):
  from cnnviz_jax.data import samples
  (tmp_path / "empty").mkdir()
  with pytest.raises(ValueError, match="holds no image file"):
    samples.load_dataset(str(tmp_path / "empty"), "test", 4, (16, 16))
  with pytest.raises(ValueError, match="not found"):
    samples.load_dataset(str(tmp_path / "missing.tar"), "test", 4, (16, 16))
  ds = samples.load_dataset("synthetic", "test", 5, (16, 16))
  assert ds.images.dtype == np.uint8 and ds.labels.tolist() == [0, 1, 0, 1, 0]


def test_launcher_main_runs_from_the_command_line(tmp_path):
  import subprocess
  import sys
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out = subprocess.run(
      [sys.executable, "experiments/filters.py",
       "--config=experiments/configs/filters.py:smoke", f"--workdir={tmp_path}",
       "--config.layer=conv2_1"], cwd=root, capture_output=True, text=True,
      timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert (tmp_path / "filters.png").exists()


def test_wrapped_flax_model():
  """A user's Flax module (models.from_flax): activations, extraction and
  top-k work through its taps; receptive fields and filters, which need a
  layer list, say so."""
  import flax.linen as nn

  class Net(nn.Module):
    @nn.compact
    def __call__(self, x):
      x = nn.relu(nn.Conv(4, (3, 3), name="conv")(x))
      return nn.Dense(3, name="head")(x.mean(axis=(1, 2)))
  net = Net()
  variables = net.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 3)))
  model = models.from_flax(net, variables, name="net", input_size=(8, 8),
                           min_size=4)
  x = _images(6, (8, 8))
  assert F.spatial_layers(model) == ("conv",)
  assert F.activation_maps(model, x[0], "conv").shape == (4, 8, 8)
  assert F.extract(model, x, "head", batch_size=4).shape == (6, 3)
  top = F.top_activations(model, x, "conv", [1], k=2, batch_size=4)
  assert top.values.shape == (1, 2)
  with pytest.raises(ValueError, match="spatial extent"):
    F.activation_maps(model, x[0], "head")
  with pytest.raises(ValueError, match="wrapped network without a layer list"):
    F.receptive_field(model, "conv")
  with pytest.raises(ValueError, match="wrapped network without a layer list"):
    F.filters(model)
