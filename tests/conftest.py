import contextlib
import os
import random
import zlib

import pytest
import torch

# Every test draws fresh random inputs; the seed is printed in pytest's header and can be
# pinned with LENET_EXT_TEST_SEED=<int> to replay a failure.
SEED = int(os.environ.get("LENET_EXT_TEST_SEED", random.SystemRandom().randrange(2**31)))

# The references compute in full float32, as our kernels do: TF32 (on by default for cuDNN
# convolutions) rounds inputs to 10 mantissa bits, which is far outside our tolerances.
torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False


def pytest_report_header(config):
    import lenet_ext

    return [
        f"lenet_ext backends: {lenet_ext.backends()}, torch {torch.__version__}, random seed LENET_EXT_TEST_SEED={SEED}"
    ]


@pytest.fixture(autouse=True)
def _seed(request):
    torch.manual_seed(SEED + zlib.crc32(request.node.nodeid.encode()))  # stable across processes
    yield


@pytest.fixture(params=["cpu", "cuda"])
def device(request):
    """The devices fixture: a test taking `device` runs once per device, on the CPU always and on
    CUDA where a GPU and our CUDA kernels exist (else that case is skipped, and says why)."""
    import lenet_ext

    if request.param == "cuda" and (not torch.cuda.is_available() or "cuda" not in lenet_ext.backends()):
        pytest.skip("needs a CUDA GPU and lenet_ext built with CUDA")
    return request.param


@pytest.fixture(scope="session")
def offline_env(tmp_path_factory):
    """Environment for runs that must not touch the network or the user's cache: an empty
    cache folder and a mirror on a closed local port, so data falls back to the embedded digits."""
    env = {"LENET_EXT_DATA": str(tmp_path_factory.mktemp("cache")), "LENET_EXT_MIRRORS": "http://127.0.0.1:9/"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def interrupt_at_epoch():
    """`with interrupt_at_epoch(k): ...`: inside the block, loop.Run.train_epoch raises
    KeyboardInterrupt (what Ctrl-C raises) at its k-th call; the real method is back after it."""
    from lenet_ext.training import loop

    @contextlib.contextmanager
    def interrupt(k):
        real = loop.Run.train_epoch
        calls = {"n": 0}

        def epoch(self):
            calls["n"] += 1
            if calls["n"] == k:
                raise KeyboardInterrupt
            return real(self)

        with pytest.MonkeyPatch.context() as m:
            m.setattr(loop.Run, "train_epoch", epoch)
            yield

    return interrupt


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, offline_env):
    """A short real training run (3 epochs on the embedded 5,000 digits) with its study."""
    from lenet_ext import train

    run_dir = str(tmp_path_factory.mktemp("run") / "run")
    code = train.main(
        [
            "--epochs",
            "3",
            "--batch-size",
            "64",
            "--lr",
            "0.01",
            "--out",
            run_dir,
            "--tsne-samples",
            "300",
            "--seed",
            "3",
        ]
    )
    assert code == 0
    return run_dir


@pytest.fixture(scope="session")
def env(offline_env):
    """The environment of a CLI run in a fresh process: offline, one thread, no debug tracebacks."""
    from hostile import cli_env

    return cli_env(offline_env)


@pytest.fixture(scope="session")
def files(trained_run, tmp_path_factory):
    """Bad files of every kind (checkpoints, images, IDX files, run folders), beside a good run."""
    from hostile import bad_files

    return bad_files(trained_run, tmp_path_factory.mktemp("bad"))
