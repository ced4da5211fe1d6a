"""Tests of cnnviz_jax.objectives: registration with taps and checks, the one
meaning of positions, evaluation on taps (whole network or from a layer)."""

from absl.testing import absltest, parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np

from conftest import tiny_model
from cnnviz_jax import objectives as O


def _images(n=2):
  return jax.random.uniform(jax.random.PRNGKey(1), (n, 16, 16, 3))


def _gram(acts, layer, target):
  a = acts[layer]
  flat = a.reshape(a.shape[0], -1, a.shape[-1])
  g = jnp.einsum("npc,npd->ncd", flat, flat) / flat.shape[1]
  return -jnp.sum(jnp.square(g - target), axis=(1, 2))


def _check_gram(model, hw, static, args):
  static, args = O.check_layer(model, hw, static, args)
  c = model.layer_shape(static[0], hw)[-1]
  if tuple(args["target"].shape[-2:]) != (c, c):
    raise ValueError(f"gram target must be [N, {c}, {c}]")
  return static, args


# A style-like term added from outside the package: resolve knows nothing of it.
if "test_gram" not in O.REGISTRY:
  O.register("test_gram", taps=lambda layer: (layer,), check=_check_gram)(_gram)


class ObjectivesTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_registered_term_resolves_and_evaluates(self):
    m, x = tiny_model(), _images()
    target = jnp.ones((2, 16, 16))
    # "features.4" is the torchvision path of relu2_1 in the tiny model.
    obj = O.resolve(O.term("test_gram", "features.4", target=target)
                    - 0.1 * O.l2(), m, (16, 16))
    self.assertEqual(obj.taps, ("relu2_1", "input"))
    got = self.variant(lambda x: O.evaluate(obj, m, x))(x)
    acts = m(x, taps=("relu2_1",), logits=False)[1]
    want = _gram(acts, "relu2_1", target) - 0.1 * jnp.mean(
        jnp.square(x - 0.5), axis=(1, 2, 3))
    np.testing.assert_allclose(got, want, rtol=1e-5)
    with self.assertRaisesRegex(ValueError, "gram target"):
      O.resolve(O.term("test_gram", "relu2_1", target=jnp.ones((2, 3, 3))), m, (16, 16))
    with self.assertRaisesRegex(ValueError, "unknown layer"):
      O.resolve(O.term("test_gram", "nope", target=target), m, (16, 16))

  def test_torchvision_path_resolves(self):
    m = tiny_model()
    alias = next(a for a, c in m.aliases.items() if c == "relu2_1")
    obj = O.resolve(O.channel(alias, 3), m, (16, 16))
    self.assertEqual(obj.taps, ("relu2_1",))

  def test_register_checks(self):
    with self.assertRaisesRegex(ValueError, "registered twice"):
      O.register("channel", taps=("logits",))(lambda acts: acts)
    with self.assertRaisesRegex(ValueError, "taps"):
      O.register("test_bad_taps", taps="logits")
    with self.assertRaisesRegex(ValueError, "unknown objective term"):
      O.term("no_such_term")

  @parameterized.named_parameters(
      ("channel", lambda: O.channel("relu2_1", 1.5)),
      ("channel_array", lambda: O.channel("relu2_1", np.array([1.0, 2.0]))),
      ("channel_bool", lambda: O.channel("relu2_1", True)),
      ("neuron", lambda: O.neuron("relu2_1", 1.7)),
      ("neuron_y", lambda: O.neuron("relu2_1", 1, 0.5, 1)),
      ("class", lambda: O.class_logit(2.0)),
      ("class_prob", lambda: O.class_prob(jnp.array([0.5]))))
  def test_non_integers_refused(self, make):
    with self.assertRaisesRegex(ValueError, "integer"):
      make()

  def test_neuron_default_is_centre_unit(self):
    m, x = tiny_model(), _images()
    acts = m(x, taps=("relu2_1", "fc6"), logits=False)[1]
    a = acts["relu2_1"]
    h, w = a.shape[1:3]
    obj = O.resolve(O.neuron("relu2_1", 3), m, (16, 16))
    np.testing.assert_allclose(O.evaluate(obj, m, x), a[:, h // 2, w // 2, 3],
                               rtol=1e-6)
    # The channel objective is the spatial mean, not a unit.
    ch = O.resolve(O.channel("relu2_1", 3), m, (16, 16))
    np.testing.assert_allclose(O.evaluate(ch, m, x), a[..., 3].mean(axis=(1, 2)),
                               rtol=1e-5)
    fc = O.resolve(O.neuron("fc6", 2), m, (16, 16))
    np.testing.assert_allclose(O.evaluate(fc, m, x), acts["fc6"][:, 2], rtol=1e-6)
    with self.assertRaisesRegex(ValueError, "not spatial"):
      O.resolve(O.neuron("fc6", 2, 0, 0), m, (16, 16))
    with self.assertRaisesRegex(ValueError, "neuron position y"):
      O.resolve(O.neuron("relu2_1", 2, h, 0), m, (16, 16))

  def test_evaluate_from_layer_equals_whole_network(self):
    m, x = tiny_model(), _images()
    obj = O.resolve(O.class_logit(jnp.array([1, 7])) + O.channel("fc6", 4), m,
                    (16, 16))
    acts = m(x, taps=("relu2_1",), logits=False)[1]["relu2_1"]
    np.testing.assert_allclose(O.evaluate(obj, m, acts, start="relu2_1"),
                               O.evaluate(obj, m, x), rtol=1e-5, atol=1e-6)
    logits, taps = m.apply_from(m.params, acts, "relu2_1", taps=("relu2_1", "fc6"))
    full_logits, full = m(x, taps=("fc6",))
    np.testing.assert_allclose(logits, full_logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(taps["fc6"], full["fc6"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(taps["relu2_1"], acts)
    with self.assertRaisesRegex(ValueError, "come before"):
      m.apply_from(m.params, acts, "relu2_1", taps=("relu1_1",))
    with self.assertRaisesRegex(ValueError, "input image"):
      O.evaluate(O.l2(), m, acts, start="relu2_1")


if __name__ == "__main__":
  absltest.main()
