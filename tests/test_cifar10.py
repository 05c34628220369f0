"""reference_impls.cifar10: the loader on the real subset, the synthetic set, and
every way a data folder can be wrong (each ends in one UserError naming the file)."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from ttabench import UserError
from ttabench.reference_impls import cifar10


@pytest.fixture(scope="module")
def small_synthetic():
    return cifar10.synthetic(train_size=200, test_size=50, seed=3)


@pytest.fixture
def good_dir(tmp_path, small_synthetic):
    """A valid data folder in the official layout (synthetic content)."""
    d = tmp_path / "cifar-10-batches-py"
    cifar10.write(small_synthetic, str(d))
    return d


def _error(data_dir) -> str:
    with pytest.raises(UserError) as e:
        cifar10.load(str(data_dir))
    msg = str(e.value)
    assert "\n" not in msg, f"error is not one line: {msg!r}"
    return msg


# --- the real subset -----------------------------------------------------------------


def test_load_real_subset(subset_dir):
    data = cifar10.load(subset_dir)
    assert data.train_images.shape == (5085, 3, 32, 32)
    assert data.test_images.shape == (1017, 3, 32, 32)
    assert data.train_images.dtype == torch.uint8 and data.test_images.dtype == torch.uint8
    assert data.train_labels.shape == (5085,) and data.test_labels.shape == (1017,)
    assert data.train_labels.dtype == torch.int64 and data.test_labels.dtype == torch.int64
    for labels in (data.train_labels, data.test_labels):
        assert int(labels.min()) == 0 and int(labels.max()) == 9
        assert set(labels.tolist()) == set(range(10))
    assert data.train_images.is_contiguous()
    # real photos use the whole range of pixel values
    assert int(data.train_images.min()) == 0 and int(data.train_images.max()) == 255
    assert data.source == "cifar10"
    assert not data.synthetic and not data.full
    desc = data.describe()
    assert desc["name"] == "cifar10-subset"
    assert desc["synthetic"] is False and desc["full"] is False
    assert desc["train_size"] == 5085 and desc["test_size"] == 1017
    assert desc["data_dir"] == os.path.abspath(subset_dir)
    assert len(desc["sha256"]) == 64


def test_load_real_subset_fingerprint_is_stable(subset_dir):
    assert cifar10.load(subset_dir).fingerprint == cifar10.load(subset_dir).fingerprint


def test_real_subset_layout_matches_read_batch(subset_dir):
    """The N x 3 x 32 x 32 view keeps the official row layout: 1024 R, 1024 G, 1024 B."""
    x, y = cifar10.read_batch(os.path.join(subset_dir, "test_batch"))
    with open(os.path.join(subset_dir, "test_batch"), "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    flat = np.asarray(raw[b"data"])
    assert np.array_equal(x[5, 1].reshape(-1), flat[5, 1024:2048])
    assert np.array_equal(y, np.asarray(raw[b"labels"]))


# --- write / load round trip ------------------------------------------------------------


def test_write_load_round_trip_is_identical_and_synthetic(tmp_path, small_synthetic):
    d = tmp_path / "syn"
    cifar10.write(small_synthetic, str(d))
    assert sorted(os.listdir(d)) == sorted([*cifar10.TRAIN_FILES, cifar10.TEST_FILE, cifar10.META_FILE])
    back = cifar10.load(str(d))
    assert torch.equal(back.train_images, small_synthetic.train_images)
    assert torch.equal(back.train_labels, small_synthetic.train_labels)
    assert torch.equal(back.test_images, small_synthetic.test_images)
    assert torch.equal(back.test_labels, small_synthetic.test_labels)
    assert back.synthetic and back.source == "synthetic"
    assert back.describe()["name"] == "synthetic"
    assert back.describe()["synthetic"] is True and back.describe()["full"] is False


def test_written_non_synthetic_data_is_not_labelled_synthetic(tmp_path, small_synthetic):
    import dataclasses

    real_looking = dataclasses.replace(small_synthetic, source="cifar10")
    cifar10.write(real_looking, str(tmp_path / "d"))
    back = cifar10.load(str(tmp_path / "d"))
    assert not back.synthetic and back.describe()["name"] == "cifar10-subset"


# --- errors, each naming the file --------------------------------------------------------


def test_missing_directory(tmp_path):
    missing = tmp_path / "nowhere"
    msg = _error(missing)
    assert str(missing) in msg


def test_directory_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_bytes(b"x")
    assert str(f) in _error(f)


def test_empty_directory_names_first_file(tmp_path):
    msg = _error(tmp_path)
    assert os.path.join(str(tmp_path), "data_batch_1") in msg


def test_a_wrong_data_dir_is_refused_before_torch_is_imported(tmp_path, good_dir):
    # `ttabench run --data-dir WRONG` answers in a fraction of a second: the folder check
    # (cifar10_layout) needs no torch, and the configuration's validation imports none
    code = (
        "import sys\n"
        "from ttabench import UserError\n"
        "from ttabench.launch.config import RunConfig\n"
        f"RunConfig(data_dir={str(good_dir)!r}).validate()\n"
        "try:\n"
        f"    RunConfig(data_dir={str(tmp_path / 'nowhere')!r}).validate()\n"
        "except UserError as e:\n"
        "    print('refused:', e)\n"
        "print('torch' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    refused, torch_loaded = proc.stdout.splitlines()
    assert refused.startswith("refused: CIFAR-10 directory not found:") and "nowhere" in refused
    assert torch_loaded == "False"


def test_missing_data_batch_3(good_dir):
    os.remove(good_dir / "data_batch_3")
    msg = _error(good_dir)
    assert os.path.join(str(good_dir), "data_batch_3") in msg
    assert "missing" in msg


def test_missing_test_batch(good_dir):
    os.remove(good_dir / "test_batch")
    assert os.path.join(str(good_dir), "test_batch") in _error(good_dir)


def test_truncated_real_file(tmp_path, subset_dir):
    d = tmp_path / "cut"
    shutil.copytree(subset_dir, d)
    path = d / "data_batch_2"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    msg = _error(d)
    assert str(path) in msg


@pytest.mark.parametrize("keep", [0, 1, 2, 100])
def test_truncated_file_any_length(good_dir, keep):
    path = good_dir / "data_batch_4"
    path.write_bytes(path.read_bytes()[:keep])
    assert str(path) in _error(good_dir)


def test_pickle_of_a_list(good_dir):
    path = good_dir / "data_batch_1"
    path.write_bytes(pickle.dumps([1, 2, 3]))
    msg = _error(good_dir)
    assert str(path) in msg and "dict" in msg


def test_not_a_pickle_at_all(good_dir):
    path = good_dir / "test_batch"
    path.write_text("<html>404 Not Found</html>")
    assert str(path) in _error(good_dir)


def _dump(path, payload, protocol=4):
    with open(path, "wb") as f:
        pickle.dump(payload, f, protocol=protocol)


@pytest.mark.parametrize(
    "data",
    [
        np.zeros((10, 100), dtype=np.uint8),  # wrong row length
        np.zeros((10, 3, 32, 32), dtype=np.uint8),  # already 4-d
        np.zeros((10, 3072), dtype=np.float32),  # wrong dtype
        np.zeros((3072,), dtype=np.uint8),  # 1-d
    ],
)
def test_wrong_data_shape_or_dtype(good_dir, data):
    path = good_dir / "data_batch_5"
    _dump(path, {b"data": data, b"labels": [0] * len(data)})
    msg = _error(good_dir)
    assert str(path) in msg and "3072" in msg


def test_label_count_mismatch(good_dir):
    path = good_dir / "data_batch_2"
    _dump(path, {b"data": np.zeros((10, 3072), dtype=np.uint8), b"labels": [0] * 9})
    assert str(path) in _error(good_dir)


def test_labels_out_of_range(good_dir):
    path = good_dir / "data_batch_2"
    _dump(path, {b"data": np.zeros((3, 3072), dtype=np.uint8), b"labels": [0, 10, 1]})
    msg = _error(good_dir)
    assert str(path) in msg and "0..9" in msg


def test_missing_keys(good_dir):
    path = good_dir / "data_batch_1"
    _dump(path, {b"images": np.zeros((3, 3072), dtype=np.uint8)})
    assert str(path) in _error(good_dir)


@pytest.mark.parametrize("protocol", [2, 5])
def test_valid_batch_written_with_protocol_2_or_5_loads(good_dir, small_synthetic, protocol):
    x = small_synthetic.train_images[:40]
    y = small_synthetic.train_labels[:40]
    _dump(
        good_dir / "data_batch_1",
        {
            b"batch_label": b"training batch 1 of 5",
            b"data": x.reshape(40, 3072).numpy(),
            b"labels": [int(v) for v in y],
        },
        protocol=protocol,
    )
    back = cifar10.load(str(good_dir))
    assert torch.equal(back.train_images[:40], x)


@pytest.mark.parametrize("protocol", [3, 4])
def test_valid_batch_written_with_protocol_3_or_4_loads(good_dir, small_synthetic, protocol):
    x = small_synthetic.train_images[:40]
    y = small_synthetic.train_labels[:40]
    _dump(
        good_dir / "data_batch_1",
        {b"data": x.reshape(40, 3072).numpy(), b"labels": [int(v) for v in y]},
        protocol=protocol,
    )
    back = cifar10.load(str(good_dir))
    assert torch.equal(back.train_images[:40], x)
    assert torch.equal(back.train_labels[:40], y)


def test_empty_batch(good_dir):
    path = good_dir / "data_batch_1"
    _dump(path, {b"data": np.zeros((0, 3072), dtype=np.uint8), b"labels": []})
    assert str(path) in _error(good_dir)


class _Evil:
    """Unpickling this runs a shell command (if the loader let it)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_executes_code_is_refused(good_dir, tmp_path):
    marker = tmp_path / "pwned"
    path = good_dir / "data_batch_1"
    _dump(path, {b"data": _Evil(marker), b"labels": [0]})
    # sanity: the payload really would run the command under plain pickle
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Evil(probe)))
    assert probe.exists()

    msg = _error(good_dir)
    assert str(path) in msg
    assert not marker.exists()


def test_pickle_that_executes_code_in_meta_is_refused(good_dir, tmp_path):
    marker = tmp_path / "pwned-meta"
    _dump(good_dir / "batches.meta", _Evil(marker))
    msg = _error(good_dir)
    assert "batches.meta" in msg
    assert not marker.exists()


def test_pickle_with_other_global_is_refused(good_dir):
    path = good_dir / "test_batch"
    _dump(
        path,
        {b"data": np.zeros((2, 3072), dtype=np.uint8), b"labels": [0, 1], b"extra": np.random.RandomState},
    )  # a class: a global reference
    assert str(path) in _error(good_dir)


# --- synthetic ------------------------------------------------------------------------


def test_synthetic_deterministic_for_a_seed():
    a = cifar10.synthetic(train_size=100, test_size=20, seed=5)
    b = cifar10.synthetic(train_size=100, test_size=20, seed=5)
    for name in ("train_images", "train_labels", "test_images", "test_labels"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert a.fingerprint == b.fingerprint


def test_synthetic_differs_across_seeds():
    a = cifar10.synthetic(train_size=100, test_size=20, seed=5)
    b = cifar10.synthetic(train_size=100, test_size=20, seed=6)
    assert not torch.equal(a.train_images, b.train_images)
    assert not torch.equal(a.test_images, b.test_images)
    assert a.fingerprint != b.fingerprint


def test_synthetic_shapes_dtypes_and_label():
    d = cifar10.synthetic()
    assert d.train_images.shape == (5000, 3, 32, 32) and d.train_images.dtype == torch.uint8
    assert d.test_images.shape == (1000, 3, 32, 32) and d.test_images.dtype == torch.uint8
    assert d.train_labels.dtype == torch.int64 and d.test_labels.dtype == torch.int64
    assert d.synthetic and not d.full
    desc = d.describe()
    assert desc["name"] == "synthetic" and desc["synthetic"] is True and desc["data_dir"] is None


def test_synthetic_class_balance():
    d = cifar10.synthetic(train_size=1000, test_size=200, seed=1)
    assert torch.bincount(d.train_labels, minlength=10).tolist() == [100] * 10
    assert torch.bincount(d.test_labels, minlength=10).tolist() == [20] * 10
    # and the labels are shuffled, not in class order
    assert not torch.equal(d.train_labels, torch.arange(1000) % 10)


def test_synthetic_test_split_differs_from_train():
    d = cifar10.synthetic(train_size=100, test_size=100, seed=0)
    assert not torch.equal(d.train_images, d.test_images)


def test_describe_full_and_subset_by_size():
    """`full` means exactly 50k train / 10k test of real data; anything else is a subset."""

    def fake(n_train, n_test, source):
        return cifar10.Cifar10(
            torch.empty(n_train, 0, dtype=torch.uint8),
            torch.zeros(n_train, dtype=torch.int64),
            torch.empty(n_test, 0, dtype=torch.uint8),
            torch.zeros(n_test, dtype=torch.int64),
            source=source,
        )

    assert fake(50_000, 10_000, "cifar10").describe()["name"] == "cifar10"
    assert fake(50_000, 10_000, "cifar10").full
    assert fake(50_000, 9_999, "cifar10").describe()["name"] == "cifar10-subset"
    assert fake(49_999, 10_000, "cifar10").describe()["name"] == "cifar10-subset"
    synthetic_full_size = fake(50_000, 10_000, "synthetic")
    assert not synthetic_full_size.full and synthetic_full_size.describe()["name"] == "synthetic"
