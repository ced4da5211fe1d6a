"""The library functions the launchers call to build inputs and score results
(samples, metrics, models.load_or_init), on the tiny model."""

import os
import shutil
import tempfile

from absl.testing import absltest
import jax
import jax.numpy as jnp
import numpy as np

from cnnviz_jax import attribution, data, models, viz
from cnnviz_jax.data import samples
from cnnviz_jax.models import predict
from conftest import tiny_model


class SamplesTest(absltest.TestCase):

  def test_synthetic_images_in_range(self):
    x = samples.synthetic_images(3, (16, 12), seed=1)
    self.assertEqual(x.shape, (3, 16, 12, 3))
    self.assertEqual(x.dtype, np.float32)
    self.assertTrue(0.0 <= x.min() and x.max() <= 1.0)
    np.testing.assert_array_equal(x, samples.synthetic_images(3, (16, 12), seed=1))

  def test_first_test_image_is_a_real_airplane(self):
    x = samples.first_test_image(data.SAMPLE_CIFAR)
    self.assertEqual(x.shape, (1, 32, 32, 3))
    np.testing.assert_array_equal(x[0], data.load_sample()[0][0] / np.float32(255))
    self.assertEqual(samples.first_test_image(data.SAMPLE_CIFAR, size=24).shape,
                     (1, 24, 24, 3))
    with self.assertRaisesRegex(FileNotFoundError, "/nonexistent/cifar.tar"):
      samples.first_test_image("/nonexistent/cifar.tar")

  def test_default_photo_bounded(self):
    self.assertEqual(max(samples.default_photo(40).shape[:2]), 40)

  def test_load_images_synthetic_and_files(self):
    x, labels, source = samples.load_images("synthetic", (16, 16), 3)
    self.assertEqual((x.shape, labels, source), ((3, 16, 16, 3), None, "synthetic"))
    folder = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, folder, ignore_errors=True)
    for i in range(2):
      viz.save_image(os.path.join(folder, f"{i}.png"), x[i])
    y, labels, _ = samples.load_images(folder, (8, 8), 5)
    self.assertEqual(y.shape, (2, 8, 8, 3))
    self.assertIsNone(labels)
    files = ",".join(os.path.join(folder, f"{i}.png") for i in range(2))
    np.testing.assert_array_equal(samples.load_images(files, (8, 8), 1)[0], y[:1])

  def test_correctly_classified(self):
    model = tiny_model()
    x = samples.synthetic_images(6, model.input_size)
    pred = np.asarray(model(x)[0].argmax(-1))
    labels = np.where(np.arange(6) % 2 == 0, pred, (pred + 1) % 10)
    kept, kept_labels = predict.correctly_classified(model, x, labels, n=2)
    np.testing.assert_array_equal(kept, x[[0, 2]])
    np.testing.assert_array_equal(kept_labels, pred[[0, 2]])


class MetricsTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.model = tiny_model()
    self.x = jnp.asarray(samples.synthetic_images(4, self.model.input_size))

  def test_class_probabilities_match_softmax(self):
    p = jax.nn.softmax(self.model(self.x)[0])
    classes = [0, 3, 3, 9]
    np.testing.assert_allclose(predict.class_probabilities(self.model, self.x, classes),
                               p[jnp.arange(4), jnp.asarray(classes)], rtol=1e-6)
    with self.assertRaisesRegex(ValueError, "out of range"):
      predict.class_probabilities(self.model, self.x, [0, 1, 2, 10])
    with self.assertRaisesRegex(ValueError, "classes must be"):
      predict.class_probabilities(self.model, self.x, [0, 1])

  def test_top_k_and_runner_up(self):
    p = np.asarray(jax.nn.softmax(self.model(self.x)[0]))
    idx, prob = predict.top_k(self.model, self.x, 3)
    self.assertEqual(idx.shape, (4, 3))
    np.testing.assert_array_equal(idx[:, 0], p.argmax(-1))
    self.assertTrue(np.all(np.diff(prob, axis=1) <= 0))
    np.testing.assert_array_equal(predict.runner_up(self.model, self.x), idx[:, 1])
    with self.assertRaisesRegex(ValueError, "k must be"):
      predict.top_k(self.model, self.x, 0)

  def test_random_other_classes(self):
    labels = np.arange(1000) % 10
    t = np.asarray(predict.random_other_classes(jax.random.PRNGKey(0), labels, 10))
    self.assertFalse(np.any(t == labels))
    self.assertEqual(set(t.tolist()), set(range(10)))

  def test_channel_means_and_activation_norm(self):
    acts = self.model(self.x, taps=("relu2_1",), logits=False)[1]["relu2_1"]
    np.testing.assert_allclose(
        predict.channel_means(self.model, self.x, "relu2_1", [0, 1, 2, 1]),
        [acts[i, ..., c].mean() for i, c in enumerate([0, 1, 2, 1])], rtol=1e-5)
    np.testing.assert_allclose(predict.activation_norm(self.model, self.x, "relu2_1"),
                               [jnp.linalg.norm(a) for a in acts], rtol=1e-5)

  def test_faithfulness(self):
    labels = np.arange(4)
    maps = {"saliency": attribution.explain(self.model, self.x, labels, "saliency")}
    out = attribution.faithfulness(self.model, self.x, labels, maps,
                               key=jax.random.PRNGKey(0), steps=4, patch=4)
    self.assertEqual(set(out), {"deletion_auc", "insertion_auc"})
    for aucs in out.values():
      self.assertEqual(set(aucs), {"saliency", "random"})
      self.assertTrue(all(0.0 <= v <= 1.0 for v in aucs.values()))
    self.assertAlmostEqual(out["deletion_auc"]["saliency"], float(attribution.deletion(
        self.model, self.x, labels, maps["saliency"], steps=4, patch=4,
        fill="blur").auc.mean()), places=6)


class LoadOrInitTest(absltest.TestCase):

  def test_shipped_and_random(self):
    self.assertEqual(models.load_or_init("cifar_vgg", key=jax.random.PRNGKey(0)).name,
                     "cifar_vgg")
    a = models.load_or_init("tiny", key=jax.random.PRNGKey(0))
    b = models.load("tiny", key=jax.random.PRNGKey(0))
    for u, v in zip(jax.tree_util.tree_leaves(a.params), jax.tree_util.tree_leaves(b.params)):
      np.testing.assert_array_equal(u, v)


if __name__ == "__main__":
  absltest.main()
