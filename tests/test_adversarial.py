"""Tests of FGSM / PGD attacks and fooling images on the synthesis engine."""

import functools
import os

from absl.testing import absltest, parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from conftest import CIFAR_TAR as CIFAR, cifar_model, tiny_model
from cnnviz_jax import adversarial as A
from cnnviz_jax.models import predict

# Untargeted L-inf PGD on the shipped model at 8/255 (the bar). The
# shipped model is trained without label smoothing: an earlier one trained with
# smoothing 0.1 masked gradients and PGD stalled at 0.93. 250 images keep the
# test to one attack batch; the README's 1,000-image figure is a launcher run.
PGD_MIN_SUCCESS = 0.99
PGD_IMAGES = 250


@functools.lru_cache(maxsize=None)
def correct_test_images(n):
  from cnnviz_jax import data
  x, y = data.load_cifar10(CIFAR, "test", limit=(n * 12) // 100 + 1)
  x = jnp.asarray(x.astype(np.float32) / 255.0)
  pred, _ = predict.predict(cifar_model(), x)
  ok = np.flatnonzero(np.asarray(pred) == y)[:n]
  return x[ok], jnp.asarray(y[ok])


def noise_images(n, hw=(16, 16)):
  return jax.random.uniform(jax.random.PRNGKey(5), (n, *hw, 3))


class AttackTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(
      ("linf", "linf", 0.03, False), ("l2", "l2", 0.5, False),
      ("linf_targeted", "linf", 0.03, True))
  def test_within_ball_and_range(self, norm, eps, targeted):
    m = tiny_model()
    x = noise_images(4)
    y = jnp.array([0, 1, 2, 3])
    attack = self.variant(functools.partial(
        A.pgd, m, eps=eps, steps=3, step_size=eps / 2, key=jax.random.PRNGKey(0),
        norm=norm, targeted=targeted))
    adv = attack(x, y)
    self.assertEqual(adv.shape, x.shape)
    self.assertTrue(np.all((adv >= 0) & (adv <= 1)))
    d = (adv - x).reshape(4, -1)
    size = jnp.max(jnp.abs(d), 1) if norm == "linf" else jnp.linalg.norm(d, axis=1)
    self.assertLessEqual(float(size.max()), eps + 1e-5)
    # jit equals no-jit and the same key gives the same output.
    np.testing.assert_allclose(adv, A.pgd(m, x, y, eps=eps, steps=3,
                                          step_size=eps / 2, key=jax.random.PRNGKey(0),
                                          norm=norm, targeted=targeted), atol=1e-6)

  def test_fgsm_and_stats(self):
    m = tiny_model()
    x = noise_images(3) * 0.5 + 0.25
    adv = A.fgsm(m, x, jnp.array([1, 2, 3]), eps=0.02)
    p = A.perturbation(x, adv)
    np.testing.assert_allclose(p["linf"], 0.02, atol=1e-6)
    mse = np.mean(np.square(np.asarray(adv - x)).reshape(3, -1), axis=1)
    np.testing.assert_allclose(p["psnr"], 10 * np.log10(1 / mse), rtol=1e-4)

  def test_keep_best_and_schedule(self):
    m = tiny_model()
    x, t = noise_images(4), jnp.array([3, 1, 4, 1])
    def loss(adv):  # the targeted margin the attack ascends
      logits = m(adv)[0]
      own = logits[jnp.arange(4), t]
      return own - jnp.max(jnp.where(jax.nn.one_hot(t, 10) > 0, -jnp.inf, logits), 1)
    # A step too large to settle: the last iterate oscillates.
    kw = dict(eps=0.1, steps=7, step_size=0.08, key=None, targeted=True)
    last = A.pgd(m, x, t, **kw)
    best = A.pgd(m, x, t, keep_best=True, **kw)
    self.assertTrue(np.all(np.asarray(loss(best)) >= np.asarray(loss(last)) - 1e-5))
    self.assertTrue(np.all(np.asarray(loss(best)) >= np.asarray(loss(x)) - 1e-5))
    # ... and here strictly better for some image (measured: 3 of 4).
    self.assertTrue(np.any(np.asarray(loss(best)) > np.asarray(loss(last)) + 1e-6))
    # A schedule equal to a constant gives the constant's result.
    np.testing.assert_allclose(
        A.pgd(m, x, t, **{**kw, "step_size": lambda i: 0.08}), last, atol=1e-6)
    with self.assertRaisesRegex(ValueError, "schedule must give"):
      A.pgd(m, x, t, **{**kw, "step_size": lambda i: -1.0})

  def test_fool_is_engine_pgd_with_cosine_decay(self):
    m = tiny_model()
    x, t = noise_images(2), jnp.array([3, 1])
    eps, steps = 0.05, 4
    got = A.fool(m, x, t, eps=eps, steps=steps)
    want = A.pgd(m, x, t, eps=eps, steps=steps, key=None, targeted=True,
                 keep_best=True, step_size=optax.cosine_decay_schedule(eps / 4, steps))
    np.testing.assert_array_equal(got, want)
    # The same attack spelled out on the engine.
    from cnnviz_jax.synthesis import engine, param
    res = engine.optimize(
        m, A.attack_setup(x, t, eps=eps, targeted=True,
                          step_size=optax.cosine_decay_schedule(eps / 4, steps)),
        param.pixels(2, x.shape[1:3]), key=None, steps=steps,
        optimizer=A.attack_optimizer("linf"), init=x, keep_best=True)
    np.testing.assert_array_equal(res.images, got)
    self.assertLessEqual(float(jnp.max(jnp.abs(got - x))), eps + 1e-6)

  def test_losses(self):
    logits = jnp.array([[2.0, 5.0, 1.0], [0.0, -1.0, 3.0]])
    labels = jnp.array([1, 0])
    acts = {"logits": logits}
    np.testing.assert_allclose(A.logit_margin(labels)(acts), [2.0 - 5.0, 3.0 - 0.0])
    np.testing.assert_allclose(A.logit_margin(labels, targeted=True)(acts), [3.0, -3.0])
    ce = jax.nn.logsumexp(logits, axis=1) - logits[jnp.arange(2), labels]
    np.testing.assert_allclose(A.cross_entropy(labels)(acts), ce, rtol=1e-6)
    np.testing.assert_allclose(A.cross_entropy(labels, True)(acts), -ce, rtol=1e-6)

  def test_attack_dataset_in_equal_batches(self):
    """5 images in batches of at most 2: three batches of 2 (the last
    padded by repeating image 4, its result dropped), batch b with key
    fold_in(key, b), as the attack on those images."""
    m, k = tiny_model(), jax.random.PRNGKey(2)
    x, y = noise_images(5), jnp.array([0, 1, 2, 3, 4])
    kw = dict(eps=0.05, steps=2, step_size=0.02)
    adv, ev = A.attack_dataset(m, x, y, attack="pgd", key=k, batch_size=2, **kw)
    self.assertEqual(adv.shape, x.shape)
    self.assertLessEqual(ev["max_linf"], 0.05 + 1e-6)
    for b, ids in enumerate(([0, 1], [2, 3], [4, 4])):
      ids = np.array(ids)
      ref = A.pgd(m, x[ids], y[ids], key=jax.random.fold_in(k, b), **kw)
      n = 1 if b == 2 else 2
      np.testing.assert_allclose(adv[ids[:n]], ref[:n], atol=1e-6)
    for bad in (0, 2.5):
      with self.assertRaisesRegex(ValueError, "batch_size must be an integer"):
        A.attack_dataset(m, x, y, key=k, batch_size=bad, **kw)
    with self.assertRaisesRegex(ValueError, "N >= 1"):
      A.attack_dataset(m, x[:0], y[:0], key=k, **kw)

  def test_bad_inputs(self):
    m = tiny_model()
    x, y, k = noise_images(2), jnp.array([0, 1]), jax.random.PRNGKey(0)
    with self.assertRaisesRegex(ValueError, "norm must be one of"):
      A.pgd(m, x, y, eps=0.1, steps=1, step_size=0.1, key=k, norm="l3")
    with self.assertRaisesRegex(ValueError, "eps must be > 0"):
      A.pgd(m, x, y, eps=-0.1, steps=1, step_size=0.1, key=k)
    with self.assertRaisesRegex(ValueError, "steps must be a positive int"):
      A.pgd(m, x, y, eps=0.1, steps=0, step_size=0.1, key=k)
    with self.assertRaisesRegex(ValueError, "labels must have shape"):
      A.pgd(m, x, jnp.array([0]), eps=0.1, steps=1, step_size=0.1, key=k)
    with self.assertRaisesRegex(ValueError, "out of range"):
      A.pgd(m, x, jnp.array([0, 10]), eps=0.1, steps=1, step_size=0.1, key=k)
    with self.assertRaisesRegex(ValueError, "unknown attack"):
      A.attack_dataset(m, x, y, attack="magic", key=k)
    with self.assertRaisesRegex(ValueError, "key must be one JAX PRNG key"):
      A.pgd(m, x, y, eps=0.1, steps=1, step_size=0.1, key=3)
    with self.assertRaisesRegex(ValueError, "loss must be one of"):
      A.pgd(m, x, y, eps=0.1, steps=1, step_size=0.1, key=k, loss="hinge")
    with self.assertRaisesRegex(ValueError, "step_size must be > 0"):
      A.pgd(m, x, y, eps=0.1, steps=1, step_size=0.0, key=k)
    with self.assertRaisesRegex(ValueError, "steps must be a positive int"):
      A.fool(m, x, y, steps=0)
    with self.assertRaisesRegex(ValueError, "labels must be integer"):
      A.pgd(m, x, jnp.array([0.5, 1.0]), eps=0.1, steps=1, step_size=0.1, key=k)


@absltest.skipUnless(os.path.exists(CIFAR), f"CIFAR-10 not found at {CIFAR}")
class CifarAttackTest(chex.TestCase):

  def test_pgd_linf_250_test_images(self):
    x, y = correct_test_images(PGD_IMAGES)
    self.assertLen(y, PGD_IMAGES)
    adv, ev = A.attack_dataset(cifar_model(), x, y, attack="pgd",
                               key=jax.random.PRNGKey(0), batch_size=250,
                               eps=8 / 255, steps=10, step_size=2 / 255,
                               restarts=1)
    print(f"PGD linf 8/255, 10 steps, {PGD_IMAGES} images:", ev)
    self.assertLessEqual(ev["max_linf"], 8 / 255 + 1e-6)
    self.assertGreaterEqual(ev["success_rate"], PGD_MIN_SUCCESS)

  def test_fooling_images(self):
    m = cifar_model()
    x, y = correct_test_images(PGD_IMAGES)
    x, y = x[:20], y[:20]
    # The target: each image's runner-up class.
    targets = jnp.argsort(m(x)[0], axis=1)[:, -2]
    fooled = A.fool(m, x, targets)
    ev = A.evaluate(m, x, fooled, y, targets)
    probs = np.asarray(jax.nn.softmax(m(fooled)[0])[jnp.arange(20), targets])
    print("fooling 4/255:", ev, "target probs", np.round(probs, 3))
    self.assertLessEqual(ev["max_linf"], 4 / 255 + 1e-6)
    self.assertGreaterEqual(ev["mean_psnr"], 35.0)
    # Measured on the first 100 such images: 94 reach >= 0.9 at 4/255; here
    # 18 of 20. The two others (logit margins 14 and 16) are limits of the
    # network, not of the attack: even untargeted PGD at 4/255 leaves them in
    # their true class, and five attack variants (Adam, momentum, log-odds
    # loss, 200 steps) reach the same target probabilities within 0.05.
    self.assertGreaterEqual(np.mean(probs >= 0.9), 0.9, msg=str(probs))
    self.assertAlmostEqual(ev["confident_success_rate"], np.mean(probs >= 0.9))
    self.assertAlmostEqual(ev["target_prob_min"], probs.min(), places=5)
    wider = A.fool(m, x[:10], targets[:10], eps=8 / 255, steps=40)
    probs8 = jax.nn.softmax(m(wider)[0])[jnp.arange(10), targets[:10]]
    self.assertTrue(np.all(np.asarray(probs8) >= 0.9), msg=str(probs8))

if __name__ == "__main__":
  absltest.main()
