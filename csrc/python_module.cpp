// The Python module lenet_ext._C: `import lenet_ext._C` loads this shared library, whose
// static TORCH_LIBRARY registrations define the ops (reached through torch.ops.lenet_ext).
// Its functions: cpu_isa() says which CPU kernels this process runs ("avx2" or "base");
// cuda_kernels_v2() and set_cuda_kernels_v2(bool) read and set flags.h's switch.
#include <Python.h>

#include "flags.h"

namespace lenet_ext {
namespace cpu {
const char* cpu_isa();
}
}  // namespace lenet_ext

namespace {

PyObject* cpu_isa(PyObject*, PyObject*) { return PyUnicode_FromString(lenet_ext::cpu::cpu_isa()); }

PyObject* cuda_kernels_v2(PyObject*, PyObject*) { return PyBool_FromLong(lenet_ext::cuda_kernels_v2()); }

PyObject* set_cuda_kernels_v2(PyObject*, PyObject* arg) {
  const int on = PyObject_IsTrue(arg);
  if (on < 0) return nullptr;
  lenet_ext::set_cuda_kernels_v2(on != 0);
  Py_RETURN_NONE;
}

PyMethodDef methods[] = {
    {"cpu_isa", cpu_isa, METH_NOARGS,
     "The instruction set of the CPU kernels in use: 'avx2' (AVX2 + FMA) or 'base' (the build's baseline)."},
    {"cuda_kernels_v2", cuda_kernels_v2, METH_NOARGS, "Whether the CUDA ops run this round's kernels."},
    {"set_cuda_kernels_v2", set_cuda_kernels_v2, METH_O, "Turn this round's CUDA kernels on or off."},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, methods};
  return PyModule_Create(&module_def);
}
}
