"""The IDX reader holds up under random bytes, truncations and extreme headers (hypothesis): a
clear error or the data, never a crash or an allocation the header asks for."""

import gzip

import numpy as np
import pytest
from hostile import idx_images

from lenet_ext import data

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blob=st.binary(max_size=4000), gz=st.booleans(), kind=st.sampled_from(["images", "labels"]))
def test_idx_reader_on_random_bytes(tmp_path, blob, gz, kind):
    path = tmp_path / "f"
    path.write_bytes(gzip.compress(blob) if gz else blob)
    try:
        array = data.read_idx(str(path), kind)
    except data.DataError:
        return
    assert array.dtype == np.uint8


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.integers(0, 5),
    cut=st.integers(0, 6000),
    gz=st.booleans(),
    extra=st.binary(max_size=3),
    dims=st.lists(st.integers(0, 2**32 - 1), min_size=3, max_size=3),
    use_dims=st.booleans(),
)
def test_idx_reader_on_truncations_and_extreme_headers(tmp_path, n, cut, gz, extra, dims, use_dims):
    good = idx_images(n, rng=np.random.default_rng(n))
    blob = good[:cut] + extra if cut < len(good) else good + extra
    if use_dims:
        blob = blob[:4] + b"".join(d.to_bytes(4, "big") for d in dims) + blob[16:]
    path = tmp_path / "f"
    path.write_bytes(gzip.compress(blob) if gz else blob)
    try:
        array = data.read_idx(str(path), "images")
    except data.DataError:
        assert blob != good
        return
    assert blob == good and array.shape == (n, 28, 28)
    assert np.array_equal(array.reshape(-1), np.frombuffer(good[16:], np.uint8))
