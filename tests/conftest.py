import os
import random

import pytest
import torch

# Every test draws fresh random inputs; the seed is printed in pytest's header and can be
# pinned with LENET_EXT_TEST_SEED=<int> to replay a failure.
SEED = int(os.environ.get("LENET_EXT_TEST_SEED", random.SystemRandom().randrange(2**31)))


def pytest_report_header(config):
    import lenet_ext
    return [f"lenet_ext backends: {lenet_ext.backends()}, torch {torch.__version__}, "
            f"random seed LENET_EXT_TEST_SEED={SEED}"]


@pytest.fixture(autouse=True)
def _seed(request):
    torch.manual_seed(SEED + hash(request.node.nodeid) % 1000003)
    yield


def devices():
    """CPU always; CUDA where a GPU and our CUDA kernels exist (else the case is skipped)."""
    import lenet_ext
    marks = []
    if not torch.cuda.is_available() or "cuda" not in lenet_ext.backends():
        marks = [pytest.mark.skip(reason="needs a CUDA GPU and lenet_ext built with CUDA")]
    return ["cpu", pytest.param("cuda", marks=marks)]
