"""python -m lenet_ext.predict on generated image files and on IDX digits."""

import gzip
import os

import numpy as np
import pytest

from lenet_ext import data, predict
from lenet_ext.images import prepare, read_image


@pytest.fixture(scope="module")
def digits(offline_env):
    ds = data.load(log=lambda m: None)
    pixels = (ds.test.images[:, 0].numpy() * data.STD + data.MEAN).clip(0, 1) * 255
    return pixels.round().astype(np.uint8), ds.test.labels.numpy()


def save_png(array, path, invert=False, scale=4):
    from PIL import Image

    img = Image.fromarray(255 - array if invert else array).resize((28 * scale + 13, 28 * scale), Image.BILINEAR)
    img.save(path)


@pytest.mark.parametrize("invert", [False, True], ids=["white-on-black", "black-on-white"])
def test_prepare_recovers_an_mnist_digit(digits, tmp_path, invert):
    images, _ = digits
    path = str(tmp_path / "digit.png")
    save_png(images[0], path, invert=invert)
    prepared = prepare(read_image(path)).astype(float)
    original = images[0].astype(float)
    assert prepared.shape == (28, 28)
    correlation = np.corrcoef(prepared.ravel(), original.ravel())[0, 1]
    assert correlation > 0.8


@pytest.mark.slow
def test_predict_cli_on_images_and_idx(trained_run, digits, tmp_path, capsys):
    images, labels = digits
    files = []
    for i in range(5):
        files.append(str(tmp_path / f"d{i}.png"))
        save_png(images[i], files[-1], invert=bool(i % 2))
    idx = str(tmp_path / "digits-idx3-ubyte.gz")
    with open(idx, "wb") as f:
        header = data.IDX_IMAGES_MAGIC.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (5, 28, 28))
        f.write(gzip.compress(header + images[:5].tobytes()))
    code = predict.main(
        ["--checkpoint", os.path.join(trained_run, "best.pt"), *files, "--idx", idx, "--index", "0", "--index", "4"]
    )
    out = capsys.readouterr().out.splitlines()
    assert code == 0 and len(out) == 7
    for line in out:
        assert "(top 3:" in line and line.count(",") == 2
    predicted = [int(line.split(":")[1].split()[0]) for line in out[:5]]
    assert sum(p == t for p, t in zip(predicted, labels[:5])) >= 3  # a 3-epoch model, generated files
    assert out[5].split(": ")[1].split()[0] == out[0].split(": ")[1].split()[0]  # same digit, same answer


@pytest.mark.slow
def test_unreadable_files_are_clear_errors(trained_run, tmp_path, capsys):
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    blank = tmp_path / "blank.png"
    from PIL import Image

    Image.new("L", (40, 40), 255).save(blank)
    code = predict.main(
        ["--checkpoint", os.path.join(trained_run, "best.pt"), str(bad), str(blank), str(tmp_path / "missing.png")]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "notes.png: cannot read as an image" in err and "blank" in err and "missing.png" in err


def test_bad_checkpoint_and_arguments(tmp_path, capsys):
    (tmp_path / "x.pt").write_bytes(b"junk")
    assert predict.main(["--checkpoint", str(tmp_path / "x.pt"), "a.png"]) == 1
    with pytest.raises(SystemExit):
        predict.main(["--checkpoint", str(tmp_path / "x.pt")])
