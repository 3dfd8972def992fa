"""Decoding is bounded in memory: a decompression-bomb image and IDX files that claim or expand to
gigabytes are refused within a fixed peak RSS of the whole CLI process."""

import os
import shutil

import pytest
from hostile import MEMORY_LIMIT_MB, cli_rss

from lenet_ext import data


@pytest.mark.slow
@pytest.mark.parametrize("what", ["huge image", "idx bomb", "idx bomb via data"])
def test_memory_stays_bounded(files, env, what, tmp_path):
    args = {
        "huge image": ["lenet_ext.predict", "--checkpoint", files["best"], files["huge"]],
        "idx bomb": ["lenet_ext.predict", "--checkpoint", files["best"], "--idx", files["bomb"], "--index", "0"],
        "idx bomb via data": ["lenet_ext.data", "--data-dir", None],
    }[what]
    if what == "idx bomb via data":
        folder = os.path.join(files["dir"], "bombdir")
        os.makedirs(folder, exist_ok=True)
        for stem in data.FILES.values():
            shutil.copy(
                files["bomb"] if stem.endswith("idx3-ubyte") else files["blank_idx"], os.path.join(folder, stem + ".gz")
            )
        args[-1] = folder
    code, out, err, rss = cli_rss(args, env, tmp_path)
    assert code == 1 and "Traceback" not in err and err.startswith("error:"), err
    assert 100 < rss < MEMORY_LIMIT_MB, f"peak RSS {rss:.0f} MB"
