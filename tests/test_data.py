"""MNIST loading: IDX validation, the split, and the download path against a real HTTP server
on 127.0.0.1 serving small IDX files generated here."""

import gzip
import hashlib
import http.server
import os
import threading

import numpy as np
import pytest
import torch

from lenet_ext import data


def idx_bytes(array: np.ndarray, kind: str) -> bytes:
    magic = data.IDX_IMAGES_MAGIC if kind == "images" else data.IDX_LABELS_MAGIC
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def fake_mnist(n_train=300, n_test=100, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "train_images": rng.integers(0, 256, (n_train, 28, 28)),
        "train_labels": np.arange(n_train) % 10,
        "test_images": rng.integers(0, 256, (n_test, 28, 28)),
        "test_labels": rng.integers(0, 10, n_test),
    }


def write_folder(folder, arrays, gz=True, override=None):
    os.makedirs(folder, exist_ok=True)
    paths = {}
    for key, stem in data.FILES.items():
        blob = idx_bytes(arrays[key], "images" if key.endswith("images") else "labels")
        if override and key in override:
            blob = override[key](blob)
        name = stem + (".gz" if gz else "")
        paths[key] = os.path.join(folder, name)
        with open(paths[key], "wb") as f:
            f.write(gzip.compress(blob) if gz else blob)
    return paths


@pytest.mark.parametrize("gz", [True, False])
def test_reads_good_files(tmp_path, gz):
    arrays = fake_mnist()
    write_folder(tmp_path, arrays, gz=gz)
    ds = data.load(data_dir=str(tmp_path), valid_size=50, seed=0)
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (250, 50, 100)
    assert ds.train.images.shape == (250, 1, 28, 28) and ds.train.images.dtype == torch.float32
    expected = (arrays["train_images"][ds.train.index.numpy()] / 255.0 - data.MEAN) / data.STD
    np.testing.assert_allclose(ds.train.images[:, 0].numpy(), expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(ds.test.labels, torch.from_numpy(arrays["test_labels"].astype(np.int64)))
    assert ds.source == "data-dir"


def test_torchvision_layout(tmp_path):
    write_folder(tmp_path / "MNIST" / "raw", fake_mnist())
    assert data.load(data_dir=str(tmp_path), valid_size=10).test.images.shape[0] == 100


BAD = {
    "bad magic": ("train_images", lambda b: (0x0801).to_bytes(4, "big") + b[4:], "magic number"),
    "truncated": ("train_images", lambda b: b[:-100], "truncated or corrupt"),
    "too long": ("test_labels", lambda b: b + b"\x00", "expected"),
    "32x32 images": (
        "test_images",
        lambda b: b[:8] + (32).to_bytes(4, "big") + (32).to_bytes(4, "big") + b[16:],
        "expected 28 x 28",
    ),
    "label out of range": ("train_labels", lambda b: b[:-1] + b"\x0c", "out of range"),
    "header only": ("test_labels", lambda b: b[:5], "too short"),
}


@pytest.mark.parametrize("case", BAD, ids=str)
def test_bad_file_is_a_clear_error_naming_it(tmp_path, case):
    key, corrupt, words = BAD[case]
    paths = write_folder(tmp_path, fake_mnist(), override={key: corrupt})
    with pytest.raises(data.DataError) as info:
        data.load(data_dir=str(tmp_path))
    assert paths[key] in str(info.value) and words in str(info.value)


def test_corrupt_gzip(tmp_path):
    paths = write_folder(tmp_path, fake_mnist())
    with open(paths["train_labels"], "r+b") as f:
        f.truncate(20)
    with pytest.raises(data.DataError, match="gzip"):
        data.load(data_dir=str(tmp_path))


def test_count_mismatch(tmp_path):
    arrays = fake_mnist()
    arrays["test_labels"] = arrays["test_labels"][:-1]
    write_folder(tmp_path, arrays)
    with pytest.raises(data.DataError, match="99 labels for 100 images"):
        data.load(data_dir=str(tmp_path))


def test_missing_file(tmp_path):
    paths = write_folder(tmp_path, fake_mnist())
    os.remove(paths["test_images"])
    with pytest.raises(data.DataError, match="does not hold the four IDX files"):
        data.load(data_dir=str(tmp_path))


def test_stratified_split():
    labels = np.repeat(np.arange(10), [100, 120, 80, 100, 100, 90, 110, 100, 100, 100])
    train, valid = data.stratified_split(labels, 100, seed=5)
    assert len(valid) == 100 and len(train) == len(labels) - 100
    assert not set(train) & set(valid)
    counts = np.bincount(labels[valid], minlength=10)
    assert np.all(np.abs(counts - np.bincount(labels) / 10) <= 1)
    assert np.array_equal(valid, data.stratified_split(labels, 100, seed=5)[1])
    assert not np.array_equal(valid, data.stratified_split(labels, 100, seed=6)[1])
    with pytest.raises(ValueError):
        data.stratified_split(labels, len(labels), seed=0)


# ------------------------------------------------------------------------------------------ download


class Server:
    """A real HTTP server on 127.0.0.1 serving {path: (status, body, truncate_to)}."""

    def __init__(self, files):
        self.files, self.requests = files, []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append(self.path)
                status, body, cut = outer.files.get(self.path.lstrip("/"), (404, b"not found", None))
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[:cut] if cut is not None else body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served(monkeypatch, tmp_path):
    """Generated MNIST files as gzip blobs, with their MD5s installed as the expected ones."""
    arrays = fake_mnist()
    blobs = {}
    for key, stem in data.FILES.items():
        blobs[stem + ".gz"] = gzip.compress(idx_bytes(arrays[key], "images" if key.endswith("images") else "labels"))
    md5 = {name: hashlib.md5(blob).hexdigest() for name, blob in blobs.items()}
    monkeypatch.setitem(data.DATASETS["mnist"], "md5", md5)
    monkeypatch.setenv("LENET_EXT_DATA", str(tmp_path / "cache"))
    return blobs


def test_download_good_files(served, monkeypatch, tmp_path):
    with Server({n: (200, b, None) for n, b in served.items()}) as server:
        monkeypatch.setenv("LENET_EXT_MIRRORS", server.url)
        ds = data.load(valid_size=30)
    assert ds.source == "download" and len(ds.test) == 100
    cache = tmp_path / "cache" / "mnist"
    assert sorted(os.listdir(cache)) == sorted(served)  # no temporary files left
    with Server({}) as server:  # now cached: no request at all
        monkeypatch.setenv("LENET_EXT_MIRRORS", server.url)
        assert data.load(valid_size=30).source == "cache"
        assert server.requests == []


@pytest.mark.parametrize("problem", ["wrong checksum", "truncated", "server error"])
def test_download_failure_leaves_nothing_and_falls_back(served, monkeypatch, tmp_path, problem):
    name = "train-images-idx3-ubyte.gz"
    files = {n: (200, b, None) for n, b in served.items()}
    if problem == "wrong checksum":
        files[name] = (200, served[name] + b"tampered", None)
    elif problem == "truncated":
        files[name] = (200, served[name], len(served[name]) // 2)
    else:
        files[name] = (500, b"oops", None)
    with Server(files) as server:
        monkeypatch.setenv("LENET_EXT_MIRRORS", server.url)
        with pytest.raises(data.DataError) as info:
            data.download("mnist", str(tmp_path / "dl"))
        assert name in str(info.value)
        assert name not in os.listdir(tmp_path / "dl")
        assert not [f for f in os.listdir(tmp_path / "dl") if f.startswith(".download-")]
        notices = []
        ds = data.load(log=notices.append)  # falls back to the embedded digits
    assert ds.source == "embedded" and len(notices) == 1 and "--data-dir" in notices[0]
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (3500, 500, 1000)
    assert torch.equal(torch.bincount(ds.test.labels), torch.full((10,), 100))


def test_offline_fails_fast_to_embedded(offline_env):
    import time

    start = time.perf_counter()
    ds = data.load(log=lambda message: None)
    assert ds.source == "embedded" and time.perf_counter() - start < 30


def test_unknown_dataset():
    with pytest.raises(ValueError, match="dataset must be one of"):
        data.load("cifar10")
