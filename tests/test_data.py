"""Data readers: the CIFAR-10 binary archive and JPEG layouts, no pickle, clear
errors naming the file, image folders, the bundled CIFAR-10 sample."""

import io
import os
import pickle
import tarfile

import numpy as np
import pytest
from PIL import Image

from cnnviz_jax import data
from cnnviz_jax.data import samples
from conftest import require_cifar

CLASSES = data.CIFAR10_CLASSES


def _png_bytes(img):
  buf = io.BytesIO()
  Image.fromarray(img).save(buf, format="PNG")
  return buf.getvalue()


def _add(t, name, blob):
  info = tarfile.TarInfo(name)
  info.size = len(blob)
  t.addfile(info, io.BytesIO(blob))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  """A CIFAR-like folder: test/<class>/ with 3 images each, class c of hue c."""
  root = tmp_path_factory.mktemp("cifar")
  rng = np.random.RandomState(0)
  for split, n in [("train", 4), ("test", 3)]:
    for c, name in enumerate(CLASSES):
      os.makedirs(root / split / name)
      for i in range(n):
        im = rng.randint(0, 256, (32, 32, 3)).astype(np.uint8)
        im[0, 0] = (c, i, 0)  # identifies the image
        Image.fromarray(im).save(root / split / name / f"{i:04d}.png")
  return root


def test_folder_reader(folder):
  x, y = data.load_cifar10(str(folder), "test")
  assert x.shape == (30, 32, 32, 3) and x.dtype == np.uint8
  np.testing.assert_array_equal(y, np.repeat(np.arange(10), 3))
  np.testing.assert_array_equal(x[:, 0, 0, :2], np.stack([y, np.tile(np.arange(3), 10)], 1))
  x2, _ = data.load_cifar10(str(folder), "train", limit=2)
  assert x2.shape[0] == 20
  with pytest.raises(ValueError, match="split must be"):
    data.load_cifar10(str(folder), "val")


def test_binary_archive(tmp_path):
  """Records of 1 label byte + 3,072 pixel bytes (R, G, B planes)."""
  rng = np.random.RandomState(0)
  imgs = rng.randint(0, 256, (20, 32, 32, 3)).astype(np.uint8)
  labels = np.arange(20) % 10
  rec = np.concatenate([labels[:, None].astype(np.uint8),
                        imgs.transpose(0, 3, 1, 2).reshape(20, -1)], 1)
  path = tmp_path / "cifar-10-binary.tar.gz"
  with tarfile.open(path, "w:gz") as t:
    _add(t, "cifar-10-batches-bin/test_batch.bin", rec.tobytes())
    for i in range(1, 6):
      _add(t, f"cifar-10-batches-bin/data_batch_{i}.bin", rec[:10].tobytes())
  x, y = data.load_cifar10(str(path), "test")
  order = np.argsort(labels, kind="stable")
  np.testing.assert_array_equal(x, imgs[order])
  np.testing.assert_array_equal(y, labels[order])
  assert data.load_cifar10(str(path), "train")[0].shape == (50, 32, 32, 3)
  assert data.load_cifar10(str(path), "test", limit=1)[0].shape == (10, 32, 32, 3)
  bad = tmp_path / "truncated.tar"
  with tarfile.open(bad, "w") as t:
    _add(t, "cifar-10-batches-bin/test_batch.bin", rec.tobytes()[:-5])
  with pytest.raises(ValueError, match="test_batch.bin holds 61455 bytes"):
    data.load_cifar10(str(bad), "test")


class _Payload:
  """Unpickling it would create the file `target` (a harmless payload)."""

  def __init__(self, target):
    self.target = target

  def __reduce__(self):
    return (open, (self.target, "w"))


def test_python_archive_is_refused_without_unpickling(tmp_path):
  target = tmp_path / "pwned"
  path = tmp_path / "cifar-10-python.tar.gz"
  with tarfile.open(path, "w:gz") as t:
    _add(t, "cifar-10-batches-py/data_batch_1", pickle.dumps(_Payload(str(target))))
    _add(t, "cifar-10-batches-py/test_batch", pickle.dumps(_Payload(str(target))))
  for split in ("train", "test"):
    with pytest.raises(ValueError, match="unpickling"):
      data.load_cifar10(str(path), split)
  assert not target.exists()


def test_no_pickle_in_the_package():
  root = os.path.dirname(data.__file__.replace("data/__init__.py", ""))
  for dirpath, _, files in os.walk(os.path.join(root, "cnnviz_jax")):
    for f in files:
      if f.endswith(".py"):
        text = open(os.path.join(dirpath, f)).read()
        assert "import pickle" not in text and "pickle.load" not in text, f


def test_bad_images_name_the_file(tmp_path):
  def layout(name, blob):
    root = tmp_path / name
    for c in CLASSES:
      os.makedirs(root / "test" / c)
      (root / "test" / c / "0000.png").write_bytes(
          _png_bytes(np.zeros((32, 32, 3), np.uint8)))
    (root / "test" / "cat" / "0001.png").write_bytes(blob)
    return str(root)
  with pytest.raises(ValueError, match=r"cannot read CIFAR-10 image .*cat/0001.png"):
    data.load_cifar10(layout("corrupt", b"\x89PNG garbage"), "test")
  with pytest.raises(ValueError, match=r"test/cat/0001.png .* is 16x8"):
    data.load_cifar10(layout("sized", _png_bytes(np.zeros((8, 16, 3), np.uint8))), "test")


def test_missing_class_folder_is_an_error(folder, tmp_path):
  root = tmp_path / "nine"
  for c in CLASSES[:-1]:
    os.makedirs(root / "test" / c)
    (root / "test" / c / "0.png").write_bytes(_png_bytes(np.zeros((32, 32, 3), np.uint8)))
  with pytest.raises(ValueError, match=r"no images for classes \['truck'\]"):
    data.load_cifar10(str(root), "test")


def test_image_folder_skips_other_files_and_says_empty(tmp_path):
  x = samples.synthetic_images(2, (16, 16))
  for i in range(2):
    Image.fromarray((x[i] * 255).astype(np.uint8)).save(tmp_path / f"{i}.png")
  (tmp_path / "notes.txt").write_text("not an image")
  (tmp_path / ".DS_Store").write_bytes(b"\0\1")
  os.makedirs(tmp_path / "sub.png")  # a folder, even with an image's name
  images, labels, _ = samples.load_images(str(tmp_path), (16, 16), 10)
  assert images.shape == (2, 16, 16, 3) and labels is None
  empty = tmp_path / "empty"
  os.makedirs(empty)
  (empty / "readme.md").write_text("")
  with pytest.raises(ValueError, match="holds no image file"):
    samples.load_images(str(empty), (16, 16), 1)
  with pytest.raises(ValueError, match="n must be an integer >= 1"):
    samples.load_images("synthetic", (16, 16), 0)
  with pytest.raises(ValueError, match=r"cannot read image .*notes.txt"):
    data.load_image(str(tmp_path / "notes.txt"))


def test_bundled_sample():
  x, y = data.load_sample()
  assert x.shape == (1000, 32, 32, 3) and x.dtype == np.uint8
  np.testing.assert_array_equal(y, np.repeat(np.arange(10), 100))
  assert os.path.getsize(data.SAMPLE_CIFAR) <= 2 * 2**20
  assert 40 < x.mean() < 200 and x.std() > 20  # real photographs, not blank
  assert os.path.exists(os.path.join(os.path.dirname(data.SAMPLE_CIFAR),
                                     "CIFAR10_SAMPLE.md"))


def test_bundled_sample_is_the_first_100_test_images_per_class():
  full = data.load_cifar10(require_cifar(), "test", limit=100)
  sample = data.load_sample()
  np.testing.assert_array_equal(sample[0], full[0])
  np.testing.assert_array_equal(sample[1], full[1])


def test_default_images_are_real_without_shared(monkeypatch, tmp_path):
  """With no ../shared, the defaults are the bundled sample, never synthetic
  shapes."""
  monkeypatch.chdir(tmp_path)  # DEFAULT_CIFAR is relative: absent here
  assert not os.path.exists(data.DEFAULT_CIFAR)
  x, y = data.load_sample()
  images, labels, source = samples.load_images(None, (32, 32), 12)
  assert source == data.SAMPLE_CIFAR
  np.testing.assert_array_equal(labels, np.arange(12) % 10)
  np.testing.assert_array_equal(images[1], x[100] / np.float32(255))
  np.testing.assert_array_equal(samples.first_test_image()[0], x[0] / np.float32(255))
  cx, cy = samples.cifar_samples(per_class=2)
  np.testing.assert_array_equal(cy, np.repeat(np.arange(10), 2))
  np.testing.assert_array_equal(data.load_cifar10(None, "test", limit=3)[1],
                                np.repeat(np.arange(10), 3))
  with pytest.raises(FileNotFoundError, match="only test images"):
    data.load_cifar10(None, "train")
  with pytest.raises(FileNotFoundError, match="not found at /nonexistent"):
    samples.first_test_image("/nonexistent/cifar.tar")


def test_bundled_photos_through_public_apis():
  photos = samples.bundled_photos(size=(24, 32))
  assert {"china", "flower"} <= set(photos)
  assert set(photos) == set(samples.bundled_photo_paths())
  for img in photos.values():
    assert img.shape == (24, 32, 3) and 0 <= img.min() and img.max() <= 1
  assert max(samples.default_photo(40).shape[:2]) == 40
