"""Launchers: configs, the shared flag handling and cheap checks
(experiments/launch.py), classify in-process, and one real command line end
to end. The other launchers' smoke runs are in test_synthesis_launchers.py and
test_attribution_launcher.py."""

import glob
import importlib
import json
import os
import subprocess
import sys

import jax
import ml_collections
import numpy as np
from PIL import Image
import pytest

from conftest import cifar_model
from cnnviz_jax.data import samples
from experiments import launch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCHERS = ("adversarial", "class_viz", "classify", "deepdream", "inversion",
             "multifaceted", "neuron_viz", "saliency")
CONFIGS = sorted(os.path.basename(p)[:-3] for p in glob.glob(
    os.path.join(ROOT, "experiments", "configs", "*.py"))
    if not p.endswith(("__init__.py", "common.py")))


def run_command(*args):
  """Runs `python *args` in the repository root; returns the CompletedProcess."""
  return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True,
                        text=True, timeout=600)


def smoke_config(name):
  return importlib.import_module(f"experiments.configs.{name}").get_config("smoke")


def read_png(path, size):
  """The PNG at `path` as uint8 `[H, W, C]`, checked to be `size` `(W, H)`
  and not blank."""
  with Image.open(path) as im:
    assert im.size == size, (path, im.size, size)
    pixels = np.asarray(im)
  assert pixels.std() > 20, f"{path} looks blank"
  return pixels


def grid_size(ncols, nrows, cell=2.0, aspect=1.0, title_lines=1):
  """Pixel size `(W, H)` of a `viz.save_grid` figure: `cell` inches per
  image's width at 100 dpi, `aspect` (the images' median height / width)
  times that per row, 0.15 inch per row for each title line beyond the
  first, plus 0.4 inch for the titles (matplotlib floors)."""
  return (int(100 * cell * ncols + 1e-6),
          int(100 * ((cell * aspect + 0.15 * (title_lines - 1)) * nrows + 0.4)
              + 1e-6))


def test_grid_rows_follow_the_images_aspect(tmp_path):
  from cnnviz_jax import viz
  wide = np.tile(np.linspace(0, 1, 64, dtype=np.float32)[None, :, None], (32, 1, 3))
  viz.save_grid(str(tmp_path / "wide.png"), [wide, wide, wide], titles=list("abc"))
  read_png(tmp_path / "wide.png", grid_size(3, 1, aspect=0.5))
  viz.save_grid(str(tmp_path / "square.png"), [wide[:, :32]] * 4, ncols=2)
  read_png(tmp_path / "square.png", grid_size(2, 2))
  # Two-line titles (the gallery's "class p / (true class)") get their line.
  viz.save_grid(str(tmp_path / "two.png"), [wide[:, :32]] * 4, ncols=2,
                titles=["a\n(b)", "c", "d\n(e)", "f"])
  read_png(tmp_path / "two.png", grid_size(2, 2, title_lines=2))


def test_every_launcher_has_a_config_and_run():
  assert set(LAUNCHERS) <= set(CONFIGS)
  for name in LAUNCHERS:
    assert callable(importlib.import_module(f"experiments.{name}").run), name


@pytest.mark.parametrize("name", CONFIGS)
def test_config_loads(name):
  module = importlib.import_module(f"experiments.configs.{name}")
  default, smoke = module.get_config(), module.get_config("smoke")
  assert isinstance(default, ml_collections.ConfigDict)
  assert set(smoke) == set(default)  # smoke changes values, never the options
  assert module.get_config("") == default
  assert f"experiments/configs/{name}.py" in module.__doc__  # launch command
  if name in LAUNCHERS:
    assert {"model", "weights"} <= set(default), name
  with pytest.raises(ValueError, match="accepted: '' .* 'smoke'"):
    module.get_config("smok")


# --- launch.py ---------------------------------------------------------------

def test_unknown_override_names_it_and_lists_the_valid_keys():
  default = launch.default_config_path("class_viz")
  with pytest.raises(ValueError, match=(
      r"unknown config key --config\.stepz for .*class_viz\.py; valid keys: "
      r"classes, model, recipe, seed, size, steps, weights\. "
      r"Did you mean steps\?")):
    launch.check_overrides(["prog", "--config.steps=3", "--config.stepz=3"], default)
  with pytest.raises(ValueError, match=r"keys --config\.a, --config\.b "):
    launch.check_overrides(["prog", "--config.a=1", "--noconfig.b"], default)
  # Valid overrides, a boolean one (`--noconfig.KEY`) and another config file
  # named with `--config X` pass.
  launch.check_overrides(["prog", "--config.steps=3"], default)
  launch.check_overrides(
      ["prog", "--config", launch.default_config_path("neuron_viz") + ":smoke",
       "--noconfig.mean", "--config.layer=relu1_1"], default)
  with pytest.raises(ValueError, match="config file .* not found"):
    launch.check_overrides(["prog", "--config=nope.py", "--config.x=1"], default)


def test_main_exits_like_absl_on_an_unknown_key(capsys, monkeypatch):
  monkeypatch.setattr(sys, "argv", ["deepdream.py", "--config.step_size=0.1"])
  with pytest.raises(SystemExit) as e:
    launch.main("deepdream", lambda config, workdir: {})
  assert e.value.code == 1
  err = capsys.readouterr().err
  assert err.startswith("FATAL Flags parsing error: unknown config key "
                        "--config.step_size")
  assert "learning_rate" in err  # among the valid keys


def test_keys_are_named_distinct_and_stable():
  keys = {p: launch.key(0, p) for p in ("init", "synthesis", "targets", "attack")}
  data = {p: tuple(np.asarray(jax.random.key_data(k)).ravel().tolist())
          for p, k in keys.items()}
  assert len(set(data.values())) == len(data)
  np.testing.assert_array_equal(jax.random.key_data(launch.key(0, "init")),
                                jax.random.key_data(keys["init"]))
  assert not np.array_equal(jax.random.key_data(launch.key(1, "init")),
                            jax.random.key_data(keys["init"]))


def test_prepare_workdir(tmp_path):
  assert launch.prepare_workdir(str(tmp_path / "a" / "b")) == str(tmp_path / "a" / "b")
  assert (tmp_path / "a" / "b").is_dir()
  (tmp_path / "file").write_text("x")
  with pytest.raises(ValueError, match="cannot create workdir"):
    launch.prepare_workdir(str(tmp_path / "file" / "run"))


# --- cheap checks before any computation -------------------------------------

BAD_CONFIGS = [
    ("classify", {"top": 11}, r"config\.top must be <= 10"),
    ("classify", {"images": "/nonexistent/a.jpg"}, r"config\.images: .* not found"),
    ("class_viz", {"recipe": "nope"}, r"unknown config\.recipe 'nope'; valid: "),
    ("class_viz", {"classes": (0, 10)}, r"config\.classes: class 10 out of range"),
    ("class_viz", {"steps": 0}, r"config\.steps must be a number >= 1; got 0"),
    ("neuron_viz", {"layer": "relu9_9"}, r"config\.layer: unknown layer 'relu9_9'"),
    ("neuron_viz", {"diversity": 0.5}, r"config\.mean=True"),
    ("neuron_viz", {"channels": ()}, r"at least one channel"),
    ("inversion", {"layers": "relu1_1,nope"}, r"config\.layers: unknown layer 'nope'"),
    ("inversion", {"layers": "relu1_1,"}, r"no empty entries"),
    ("deepdream", {"layer": "fc9"}, r"config\.layer: unknown layer 'fc9'"),
    ("deepdream", {"octave_scale": 1.0}, r"octave_scale must be > 1"),
    ("deepdream", {"image": "/nonexistent/a.jpg"}, r"config\.image: .* not found"),
    ("multifaceted", {"k": 3, "images_per_class": 2}, r"images_per_class must be a number >= 3"),
    ("multifaceted", {"model": "vgg11"}, r"CIFAR-10 classifier .* vgg11 has 1000"),
    ("multifaceted", {"target": 10}, r"config\.target: class 10 out of range"),
    ("multifaceted", {"layer": "fc9"}, r"config\.layer: unknown layer 'fc9'"),
    ("adversarial", {"attack": "cw"}, r"unknown config\.attack 'cw'; valid: fgsm, pgd"),
    ("adversarial", {"n": 0}, r"config\.n must be a number >= 1; got 0"),
    ("adversarial", {"fool_images": 17}, r"fool_images \(17\) must be <= config\.n \(16\)"),
    ("adversarial", {"data": "/nonexistent/c.tar"}, r"config\.data: .* not found"),
    ("saliency", {"num_images": 0}, r"config\.num_images must be a number >= 1; got 0"),
    ("saliency", {"methods": "saliency,nope"}, r"unknown config\.methods \['nope'\]"),
    ("saliency", {"layer": "nope"}, r"config\.layer: unknown layer 'nope'"),
    ("saliency", {"layer": "relu1_1", "methods": "saliency"}, r"Grad-CAM layer"),
] + [(name, {"model": "nope"}, r"'nope'") for name in LAUNCHERS]


@pytest.fixture
def no_compute(monkeypatch):
  """Fails a launcher that reaches model loading: every check must come first."""
  def load_model(*args, **kwargs):
    raise AssertionError("the launcher loaded a model before failing")
  monkeypatch.setattr(launch, "load_model", load_model)


@pytest.mark.parametrize("name,overrides,match", BAD_CONFIGS,
                         ids=[f"{n}-{'-'.join(o)}" for n, o, _ in BAD_CONFIGS])
def test_bad_config_fails_before_computing(name, overrides, match, tmp_path, no_compute):
  config = smoke_config(name)
  if "data" in config:
    config.data = __file__  # present, so that the check under test is reached
  config.update(overrides)
  workdir = tmp_path / "run"
  with pytest.raises(ValueError, match=match):
    importlib.import_module(f"experiments.{name}").run(config, str(workdir))
  assert not workdir.exists()  # failed before creating it


@pytest.mark.parametrize("name", LAUNCHERS)
def test_workdir_under_a_file_fails_before_computing(name, tmp_path, no_compute):
  config = smoke_config(name)
  if "data" in config:
    config.data = __file__
  (tmp_path / "file").write_text("x")
  with pytest.raises(ValueError, match="cannot create workdir"):
    importlib.import_module(f"experiments.{name}").run(config, str(tmp_path / "file" / "run"))


# --- classify ------------------------------------------------------------------

def test_classify_in_process(tmp_path):
  from experiments import classify
  config = smoke_config("classify")
  metrics = classify.run(config, str(tmp_path))
  photos = samples.bundled_photos(size=(32, 32))
  assert len(photos) >= 2  # sklearn and matplotlib ship them
  assert metrics == {"num_images": len(photos)}
  assert json.load(open(tmp_path / "metrics.json")) == metrics
  assert json.load(open(tmp_path / "config.json")) == config.to_dict()
  # The top-3 equal an independent softmax of the model's logits.
  model = cifar_model()
  logits, _ = model.apply(model.params, np.stack(list(photos.values())))
  probs = np.asarray(jax.nn.softmax(logits, axis=-1))
  preds = json.load(open(tmp_path / "predictions.json"))
  assert [r["image"] for r in preds] == list(photos)
  for r, p in zip(preds, probs):
    order = np.argsort(-p)[:3]
    assert [c for c, _ in r["top"]] == [model.class_names[i] for i in order]
    np.testing.assert_allclose([q for _, q in r["top"]], p[order], atol=1e-5)
  read_png(tmp_path / "predictions.png", grid_size(len(photos), 1))


def test_command_line_end_to_end(tmp_path):
  """A real command line: flags, a `:smoke` config, an override (all classes
  listed, so each image's probabilities must sum to 1)."""
  out = run_command("experiments/classify.py",
                    "--config=experiments/configs/classify.py:smoke",
                    f"--workdir={tmp_path}", "--config.top=10")
  assert out.returncode == 0, out.stderr[-3000:]
  preds = json.load(open(tmp_path / "predictions.json"))
  assert len(preds) == len(samples.bundled_photo_paths())
  for r in preds:
    probs = [p for _, p in r["top"]]
    assert len(probs) == 10 and probs == sorted(probs, reverse=True)
    assert abs(sum(probs) - 1) < 1e-5, r
  assert json.load(open(tmp_path / "config.json"))["top"] == 10
  assert json.loads(out.stdout[:out.stdout.rindex("}") + 1]) == json.load(
      open(tmp_path / "metrics.json"))


def test_command_line_unknown_key(tmp_path):
  out = run_command("experiments/class_viz.py", f"--workdir={tmp_path}",
                    "--config.stepz=3")
  assert out.returncode == 1
  assert "unknown config key --config.stepz" in out.stderr
  assert "valid keys: classes, model, recipe, seed, size, steps, weights" in out.stderr
  assert "Traceback" not in out.stderr
  assert not os.listdir(tmp_path)


def test_convert_launcher_offline(tmp_path):
  import torch
  from weights_conversion import torch_reference as tr
  torch.save(tr.torchvision_model("alexnet").state_dict(), tmp_path / "a.pth")
  out = run_command("-m", "weights_conversion.convert_torchvision", "--arch=alexnet",
                    f"--state_dict={tmp_path / 'a.pth'}",
                    f"--output={tmp_path / 'a.safetensors'}")
  assert out.returncode == 0, out.stderr[-3000:]
  from cnnviz_jax import models
  assert models.load("alexnet", str(tmp_path / "a.safetensors")).class_names[1] == "goldfish"
