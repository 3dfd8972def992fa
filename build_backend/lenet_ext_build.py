"""The build backend of `pip install .`: setuptools, built against the torch already installed.

lenet_ext._C must be compiled against the exact torch it will run with. Under pip's build isolation
a plain setuptools build would install a fresh torch into a temporary environment (the newest
release, several GB, perhaps CUDA where the user has a CPU build) and compile against that: the
package would then fail to load beside the user's torch. So before anything is built, this backend
asks the interpreter that pip installs into (sys.executable, run without the isolation's
environment) where its torch is:

- it has one: the build uses that torch (its site-packages folder is appended to this process's
  path, after the isolated environment's own packages), and torch is not asked for as a build
  requirement, so nothing is downloaded;
- it has none: torch is a build requirement as usual (the runtime dependency then installs the
  same release beside it).

Every hook is setuptools' own (setuptools.build_meta); only the requirements and sys.path differ.
Under --no-build-isolation, torch is importable in-process and nothing changes.
"""

import json
import os
import subprocess
import sys
import tempfile

from setuptools import build_meta as _setuptools

TORCH_REQUIREMENT = "torch>=2.13"
_PROBE = (
    "import json, os, torch; "
    "print(json.dumps({'version': torch.__version__, 'cuda': torch.version.cuda, "
    "'site': os.path.dirname(os.path.dirname(os.path.abspath(torch.__file__)))}))"
)


def _torch_in_process() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def target_torch():
    """{'version', 'cuda', 'site'} of the torch in the environment being installed into, or None.
    -E: without pip's PYTHONPATH and PYTHONNOUSERSITE, the interpreter sees its own packages."""
    try:
        out = subprocess.run(
            [sys.executable, "-E", "-c", _PROBE], capture_output=True, text=True, timeout=600, cwd=tempfile.gettempdir()
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    try:
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


_TORCH = None if _torch_in_process() else target_torch()
if _TORCH is not None:
    if _TORCH["site"] not in sys.path:
        sys.path.append(_TORCH["site"])
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), _TORCH["site"]]))
    print(
        f"lenet_ext: building against the installed torch {_TORCH['version']} "
        f"({'CUDA ' + _TORCH['cuda'] if _TORCH['cuda'] else 'CPU'}) from {_TORCH['site']}",
        file=sys.stderr,
    )


def _with_torch(requirements):
    if _TORCH is not None or _torch_in_process():
        return list(requirements)
    return [*requirements, TORCH_REQUIREMENT]


# setuptools' own get_requires hooks run setup.py, which imports torch: asked before torch is
# there, they would fail. setup.py asks for nothing beyond pyproject's requirements.
def get_requires_for_build_wheel(config_settings=None):
    return _with_torch([])


def get_requires_for_build_editable(config_settings=None):
    return _with_torch([])


def get_requires_for_build_sdist(config_settings=None):
    return _setuptools.get_requires_for_build_sdist(config_settings)


prepare_metadata_for_build_wheel = _setuptools.prepare_metadata_for_build_wheel
prepare_metadata_for_build_editable = _setuptools.prepare_metadata_for_build_editable
build_wheel = _setuptools.build_wheel
build_editable = _setuptools.build_editable
build_sdist = _setuptools.build_sdist
