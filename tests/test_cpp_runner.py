"""The model on our kernels from C++: python -m lenet_ext.export --format aoti writes an AOTInductor
package, and lenet5_predict (examples/cpp/lenet5_predict.cpp, built by scripts/cmake_build.sh) runs it
with our op library. Its logits on MNIST test digits equal the Python model's, bit for bit; bad
packages and inputs are one `error:` line and a non-zero exit.

The program is looked for in build-cmake/*/ (or LENET_EXT_CPP_RUNNER); without it these tests skip,
unless LENET_EXT_REQUIRE_CPP_RUNNER=1 (CI, after the CMake build), where they fail."""

import glob
import gzip
import os
import subprocess

import numpy as np
import pytest
import torch

from lenet_ext import checkpoint, data, export

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def runner_path():
    found = os.environ.get("LENET_EXT_CPP_RUNNER") or next(
        iter(sorted(glob.glob(os.path.join(ROOT, "build-cmake", "*", "lenet5_predict")))), None
    )
    if not found or not os.access(found, os.X_OK):
        if os.environ.get("LENET_EXT_REQUIRE_CPP_RUNNER") == "1":
            pytest.fail("lenet5_predict (examples/cpp/lenet5_predict.cpp) is not built (bash scripts/cmake_build.sh)")
        pytest.skip(
            "lenet5_predict (examples/cpp/lenet5_predict.cpp) is not built (bash scripts/cmake_build.sh builds it)"
        )
    return found


def run(*args):
    proc = subprocess.run([runner_path(), *map(str, args)], capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


def write_idx(path, digits: np.ndarray, gz=False):
    n, h, w = digits.shape
    blob = (0x803).to_bytes(4, "big") + b"".join(v.to_bytes(4, "big") for v in (n, h, w)) + digits.tobytes()
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(blob)


@pytest.fixture(scope="module")
def package(trained_run, tmp_path_factory):
    runner_path()  # skip before the export's half minute when there is no program to test
    path = str(tmp_path_factory.mktemp("aoti") / "lenet5.pt2")
    assert export.main(["--checkpoint", os.path.join(trained_run, "best.pt"), "--format", "aoti", "--out", path]) == 0
    model, _ = checkpoint.model_from_checkpoint(os.path.join(trained_run, "best.pt"))
    return path, model.eval()


@pytest.fixture(scope="module")
def digits(offline_env):
    ds = data.load(log=lambda m: None)
    pixels = (ds.test.images[:, 0].numpy() * data.STD + data.MEAN).clip(0, 1) * 255
    return pixels.round().astype(np.uint8)[:64], ds.test.labels[:64].numpy()


def logits_of(stdout):
    rows = [line.split(" logits ")[1] for line in stdout.splitlines() if " logits " in line]
    return torch.tensor([[float(v) for v in row.split()] for row in rows], dtype=torch.float32)


@pytest.mark.slow  # trains, then compiles the package
@pytest.mark.parametrize("gz", [False, True], ids=["idx", "idx.gz"])
def test_logits_equal_the_python_model(package, digits, tmp_path, gz):
    path, model = package
    images, _ = digits
    idx = tmp_path / ("digits-idx3-ubyte" + (".gz" if gz else ""))
    write_idx(idx, images, gz)
    code, out, err = run(path, idx, "--logits", "--repeat", "20")
    assert code == 0, err
    theirs = logits_of(out)
    with torch.inference_mode():
        ours = model(data.to_tensor(images))
    assert theirs.shape == ours.shape
    assert torch.equal(theirs, ours), f"max |difference| {(theirs - ours).abs().max():.3e}"
    predicted = [int(line.split(": ")[1].split()[0]) for line in out.splitlines() if " logits " in line]
    assert predicted == ours.argmax(1).tolist()
    assert "batch-1 latency:" in out.splitlines()[-1]


@pytest.mark.slow
def test_a_png_digit(package, digits, tmp_path):
    from PIL import Image

    path, model = package
    images, _ = digits
    Image.fromarray(images[3]).save(tmp_path / "digit.png")
    Image.fromarray(images[3]).convert("RGB").save(tmp_path / "digit-rgb.png")
    with torch.inference_mode():
        ours = model(data.to_tensor(images[3:4]))
    for name in ("digit.png", "digit-rgb.png"):
        code, out, err = run(path, tmp_path / name, "--logits", "--repeat", "5")
        assert code == 0, err
        assert torch.equal(logits_of(out), ours), name


@pytest.mark.slow
def test_bad_packages_and_inputs_are_one_line(package, digits, tmp_path):
    from PIL import Image

    path, _ = package
    images, _ = digits
    good = tmp_path / "good-idx3-ubyte"
    write_idx(good, images[:2])
    write_idx(tmp_path / "big-idx3-ubyte", np.zeros((2, 32, 32), np.uint8))
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "big.png")
    (tmp_path / "junk.pt2").write_bytes(os.urandom(2048))
    (tmp_path / "notpng.png").write_bytes(b"plain text")
    cases = [
        ((tmp_path / "missing.pt2", good), 1, "cannot open"),
        ((tmp_path / "junk.pt2", good), 1, "not an AOTInductor package"),
        ((path, tmp_path / "big-idx3-ubyte"), 1, "expected 28x28"),
        ((path, tmp_path / "big.png"), 1, "expected 28x28"),
        ((path, tmp_path / "notpng.png"), 1, "not a PNG"),
        ((path, tmp_path / "nothing-idx3-ubyte"), 1, "cannot open"),
        ((path,), 2, "give the model package and the digits"),
        ((path, good, "--repeat", "0"), 2, "--repeat must be >= 1"),
    ]
    for args, status, words in cases:
        code, out, err = run(*args)
        lines = err.strip().splitlines()
        assert code == status, (args, code, err)
        assert words in lines[-1] and lines[-1].startswith(("error:", "lenet5_predict: error:")), (args, err)
        assert len(lines) <= 2 and "terminate called" not in err, (args, err)
