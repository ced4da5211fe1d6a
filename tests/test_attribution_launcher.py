"""Smoke test of experiments/saliency.py in-process on its smoke config (the
random `tiny` model on synthetic images)."""

import json

from test_launchers import grid_size, read_png, smoke_config


def test_saliency_runs_end_to_end(tmp_path):
  from experiments import saliency
  config = smoke_config("saliency")
  m = saliency.run(config, str(tmp_path))
  assert json.load(open(tmp_path / "metrics.json")) == m
  assert json.load(open(tmp_path / "config.json")) == config.to_dict()
  assert m["model"] == "tiny" and m["images"] == "synthetic"
  assert m["num_images"] == config.num_images == 2
  # No labels on synthetic images: the targets are the model's predictions.
  assert m["targets"] == m["predictions"] and len(m["targets"]) == 2
  methods = {"saliency", "grad_cam", "occlusion", "smoothgrad", "random"}
  assert set(m["deletion_auc"]) == set(m["insertion_auc"]) == methods
  # AUCs of softmax probabilities.
  assert all(0.0 <= v <= 1.0 for v in m["deletion_auc"].values())
  assert all(0.0 <= v <= 1.0 for v in m["insertion_auc"].values())
  # One row per image: the image, then each method (random is not drawn).
  read_png(tmp_path / "grid.png", grid_size(1 + len(methods) - 1, 2))
