"""Smoke test of experiments/saliency.py on the tiny model."""

import json
import os
import tempfile

from absl.testing import absltest

from experiments import saliency


class SaliencyLauncherTest(absltest.TestCase):

  def test_runs_end_to_end(self):
    workdir = tempfile.mkdtemp()
    results = saliency.run("tiny", None, "synthetic",
                           ["saliency", "grad_cam", "occlusion", "smoothgrad"],
                           workdir, num_images=2, metric_steps=4, metric_patch=4)
    self.assertTrue(os.path.getsize(os.path.join(workdir, "grid.png")) > 1000)
    with open(os.path.join(workdir, "metrics.json")) as f:
      stored = json.load(f)
    self.assertEqual(stored["num_images"], 2)
    self.assertEqual(set(stored["deletion_auc"]),
                     {"saliency", "grad_cam", "occlusion", "smoothgrad", "random"})
    for v in results["insertion_auc"].values():
      self.assertTrue(0.0 <= v <= 1.0)

  def test_synthetic_images_in_range(self):
    x = saliency.synthetic_images(3, (16, 16))
    self.assertEqual(x.shape, (3, 16, 16, 3))
    self.assertTrue(0.0 <= x.min() and x.max() <= 1.0)


if __name__ == "__main__":
  absltest.main()
