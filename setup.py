"""Builds lenet_ext._C, the compiled kernels, with torch.utils.cpp_extension (ninja).

`pip install .` builds it against the torch already installed (build_backend/lenet_ext_build.py;
the extension must be compiled against the exact torch it runs with).

Environment switches:
  USE_CUDA=0|1      0: CPU only. 1: require the CUDA kernels. Unset: build CUDA when
                    torch has CUDA and a CUDA toolkit is found (CUDA_HOME, else /usr/local/cuda
                    when it holds nvcc, else the nvcc on PATH).
  FORCE_CUDA=1      same as USE_CUDA=1 (build CUDA even without a visible GPU).
  TORCH_CUDA_ARCH_LIST  GPU architectures, e.g. "8.0;9.0". Default: the GPUs this machine has (each
                    one's compute capability, PTX for the newest); with no GPU visible, "8.0;9.0+PTX"
                    (A100 and H100/H200, PTX for newer). Set it when building for other GPUs.
  MAX_JOBS          parallel compile jobs (default: ninja's, the number of cores + 2).
  LENET_EXT_ASAN=1  debug build under AddressSanitizer (see scripts/asan_check.sh).
  LENET_EXT_NATIVE=1  add -march=native (fastest on the build machine, not portable).
  LENET_EXT_OPENMP=0  build without OpenMP even where the compiler has it. By default OpenMP is
                    used where the C++ compiler (CXX, else c++) compiles and links an OpenMP
                    program; where it cannot (Apple's clang, a clang without libomp), the CPU
                    kernels are built without it and run on one thread.
"""

import glob
import os
import shlex
import shutil
import subprocess
import sys
import tempfile

# torch guesses CUDA_HOME from the nvcc on PATH, which a wrapper script in /usr/local/bin
# fools; prefer the standard toolkit location when CUDA_HOME is not set.
if not os.environ.get("CUDA_HOME") and not os.environ.get("CUDA_PATH") and os.path.exists("/usr/local/cuda/bin/nvcc"):
    os.environ["CUDA_HOME"] = "/usr/local/cuda"

import torch  # noqa: E402
from setuptools import setup  # noqa: E402
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension, include_paths  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
# With no GPU to read the architecture from: Ampere (A100) and Hopper (H100/H200), plus PTX so that
# newer GPUs can JIT-compile. Each architecture is one more device compile of every .cu file.
FALLBACK_CUDA_ARCHS = "8.0;9.0+PTX"
# Warnings as the CMake build has them; -Wno-psabi silences GCC's notes on the vector-extension ABI.
# torch's headers are included as system headers (-isystem), so the warnings are ours alone.
WARNINGS = ["-Wall", "-Wextra", "-Wno-psabi"]
SYSTEM_HEADERS = [flag for path in include_paths() for flag in ("-isystem", path)]


def default_cuda_archs() -> str:
    """The compute capabilities of the GPUs present (PTX for the newest), else FALLBACK_CUDA_ARCHS."""
    try:
        found = sorted({torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})
    except Exception:  # no driver, or a driver too old for this torch: build for the fallback
        found = []
    if not found:
        return FALLBACK_CUDA_ARCHS
    archs = [f"{major}.{minor}" for major, minor in found]
    archs[-1] += "+PTX"
    return ";".join(archs)


def _flag(name):
    value = os.environ.get(name)
    return None if value is None or value == "" else value not in ("0", "false", "False", "OFF", "off")


def openmp() -> tuple:
    """(whether to build with OpenMP, why): where the C++ compiler builds an OpenMP program, the
    CPU kernels use at::parallel_for on torch's threads; elsewhere torch's parallel header (which
    includes omp.h) cannot be used, and csrc/cpu/parallel.h runs the loops on one thread."""
    if _flag("LENET_EXT_OPENMP") is False:
        return False, "LENET_EXT_OPENMP=0"
    compiler = shlex.split(os.environ.get("CXX", "c++"))
    with tempfile.TemporaryDirectory() as d:
        source = os.path.join(d, "omp.cpp")
        with open(source, "w") as f:
            f.write("#include <omp.h>\nint main() { return omp_get_max_threads() > 0 ? 0 : 1; }\n")
        try:
            done = subprocess.run(
                [*compiler, "-fopenmp", source, "-o", os.path.join(d, "omp")], capture_output=True, timeout=120
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return False, f"{' '.join(compiler)} could not be run ({exc})"
    if done.returncode != 0:
        return False, f"{' '.join(compiler)} has no OpenMP (omp.h and -fopenmp)"
    return True, f"OpenMP from {' '.join(compiler)}"


def want_cuda():
    forced = _flag("FORCE_CUDA") or _flag("USE_CUDA")
    if _flag("USE_CUDA") is False:
        return False, "USE_CUDA=0"
    has_toolkit = CUDA_HOME is not None and os.path.exists(os.path.join(CUDA_HOME, "bin", "nvcc"))
    if torch.version.cuda is None:
        if forced:
            sys.exit("lenet_ext: CUDA build requested but this torch has no CUDA (torch.version.cuda is None)")
        return False, "torch is a CPU-only build"
    if not has_toolkit:
        if forced:
            sys.exit("lenet_ext: CUDA build requested but no CUDA toolkit found (set CUDA_HOME)")
        return False, "no CUDA toolkit found (set CUDA_HOME to build the CUDA kernels)"
    if not glob.glob(os.path.join(HERE, "csrc", "cuda", "*.cu")):
        return False, "no CUDA sources"
    return True, f"torch CUDA {torch.version.cuda}, toolkit at {CUDA_HOME}"


def extension():
    cuda, why = want_cuda()
    sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/cpu/*.cpp"))
    # -fopenmp: at::parallel_for is an inline OpenMP loop in torch's headers; libgomp is the one
    # torch already loaded (same soname). Without OpenMP, see openmp().
    # -g0: Python's own CFLAGS ask for debug info, which costs a third of the compile time over
    # torch's templates and triples the module's size; LENET_EXT_ASAN=1 keeps it.
    use_omp, omp_why = openmp()
    omp = ["-fopenmp", "-DLENET_EXT_OPENMP=1"] if use_omp else []
    threads = f"{omp_why}: CPU kernels on torch's threads" if use_omp else f"{omp_why}: CPU kernels on one thread"
    cxx = ["-O3", "-g0", *omp, *WARNINGS, *SYSTEM_HEADERS]
    nvcc = ["-O3", "--expt-relaxed-constexpr"]
    if _flag("LENET_EXT_NATIVE"):
        cxx.append("-march=native")
    link = ["-fopenmp"] if use_omp else []
    if _flag("LENET_EXT_ASAN"):
        cxx = ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address", *omp, *WARNINGS, *SYSTEM_HEADERS]
        link = ["-fsanitize=address"] + (["-fopenmp"] if use_omp else [])
    if cuda:
        # The ops (csrc/cuda/*.cpp: checks, allocation, torch's headers) compile with the C++
        # compiler; the kernels (csrc/cuda/*_kernels.cu, no torch headers) with nvcc, once per
        # architecture each, which is why torch stays out of them.
        sources += sorted(glob.glob("csrc/cuda/*.cpp") + glob.glob("csrc/cuda/*.cu"))
        cxx += ["-isystem", os.path.join(CUDA_HOME, "include")]
        if not os.environ.get("TORCH_CUDA_ARCH_LIST"):
            os.environ["TORCH_CUDA_ARCH_LIST"] = default_cuda_archs()
        print(f"lenet_ext: building CPU + CUDA kernels ({why}; archs {os.environ['TORCH_CUDA_ARCH_LIST']}; {threads})")
        return CUDAExtension(
            "lenet_ext._C",
            sources,
            extra_compile_args={"cxx": cxx, "nvcc": nvcc},
            extra_link_args=link,
            define_macros=[("LENET_EXT_WITH_CUDA", "1")],
        )
    print(f"lenet_ext: building CPU kernels only ({why}; {threads})")
    return CppExtension("lenet_ext._C", sources, extra_compile_args={"cxx": cxx}, extra_link_args=link)


class BuildExt(BuildExtension):
    """torch's BuildExtension plus one check of what was linked.

    The extension must share torch's libstdc++ (libstdc++.so.6). A compiler that links
    libstdc++ statically (seen: CXX=/opt/gcc/bin/g++ on a GPU image) gives a module that
    imports and computes, then segfaults the first time a kernel formats an error message:
    two copies of the C++ runtime's stream state. Fail the build instead, with the fix.
    """

    def run(self):
        # Objects compiled against another torch (one upgraded since): ninja would keep them, as
        # pip gives the new torch's headers their old timestamps. Start the build afresh then.
        stamp = os.path.join(self.build_temp, "lenet_ext_torch.txt")
        built_for = f"{torch.__version__} cuda {torch.version.cuda}"
        if os.path.isdir(self.build_temp):
            with open(stamp) if os.path.exists(stamp) else open(os.devnull) as f:
                if f.read() != built_for:
                    shutil.rmtree(self.build_temp)
                    self.force = True
        super().run()
        os.makedirs(self.build_temp, exist_ok=True)
        with open(stamp, "w") as f:
            f.write(built_for)

    @staticmethod
    def _write_build_info(folder):
        with open(os.path.join(folder, "_build_info.py"), "w") as f:
            f.write(
                '"""Written by setup.py: the torch lenet_ext._C was compiled against."""\n\n'
                f"TORCH_VERSION = {torch.__version__!r}\nTORCH_CUDA = {torch.version.cuda!r}\nSOURCE = {HERE!r}\n"
            )

    def copy_extensions_to_source(self):
        """--inplace and editable installs: the module, and its build info, into the source tree."""
        super().copy_extensions_to_source()
        self._write_build_info(os.path.join(HERE, "lenet_ext"))

    def build_extension(self, ext):
        super().build_extension(ext)
        path = self.get_ext_fullpath(ext.name)
        # What the module was built against, read by lenet_ext/__init__.py before it loads the
        # module: a torch changed since then is a one-line ImportError, not undefined symbols.
        self._write_build_info(os.path.dirname(path))
        if sys.platform.startswith("linux") and os.path.exists(path):
            with open(path, "rb") as f:
                linked_shared = b"libstdc++.so.6" in f.read()
            if not linked_shared:
                os.remove(path)
                sys.exit(
                    f"lenet_ext: {os.path.basename(path)} was linked without libstdc++.so.6 (the C++ "
                    f"runtime got linked in statically by CXX={os.environ.get('CXX', 'c++')}); it would "
                    "crash on its first error. Build with the system compiler: CXX=g++ CC=gcc pip install ..."
                )


setup(ext_modules=[extension()], cmdclass={"build_ext": BuildExt})
