// The Python module lenet_ext._C: `import lenet_ext._C` loads this shared library, whose
// static TORCH_LIBRARY registrations define the ops (reached through torch.ops.lenet_ext).
// Its functions: cpu_isa() says which CPU kernels this process runs; cuda_kernels() and
// set_cuda_kernels("v1"|"v2") read and set flags.h's CUDA kernel generation.
#include <Python.h>

#include <cstring>

#include "flags.h"

namespace lenet_ext {
namespace cpu {
const char* cpu_isa();
}
}  // namespace lenet_ext

namespace {

PyObject* cpu_isa(PyObject*, PyObject*) { return PyUnicode_FromString(lenet_ext::cpu::cpu_isa()); }

PyObject* cuda_kernels(PyObject*, PyObject*) {
  return PyUnicode_FromString(lenet_ext::cuda_kernels() == lenet_ext::CudaKernels::v2 ? "v2" : "v1");
}

PyObject* set_cuda_kernels(PyObject*, PyObject* arg) {
  const char* name = PyUnicode_Check(arg) ? PyUnicode_AsUTF8(arg) : nullptr;
  if (name == nullptr || (std::strcmp(name, "v1") != 0 && std::strcmp(name, "v2") != 0)) {
    PyErr_Clear();
    PyErr_SetString(PyExc_ValueError, "set_cuda_kernels: generation must be 'v1' or 'v2'");
    return nullptr;
  }
  lenet_ext::set_cuda_kernels(std::strcmp(name, "v2") == 0 ? lenet_ext::CudaKernels::v2 : lenet_ext::CudaKernels::v1);
  Py_RETURN_NONE;
}

PyMethodDef methods[] = {
    {"cpu_isa", cpu_isa, METH_NOARGS, "The instruction set of the CPU kernels in use."},
    {"cuda_kernels", cuda_kernels, METH_NOARGS, "The CUDA kernel generation the ops run: 'v1' or 'v2'."},
    {"set_cuda_kernels", set_cuda_kernels, METH_O, "Set the CUDA kernel generation: 'v1' or 'v2'."},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT, "_C", nullptr, -1, methods, nullptr, nullptr, nullptr, nullptr};
  return PyModule_Create(&module_def);
}
}
