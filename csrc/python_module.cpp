// The Python module lenet_ext._C: `import lenet_ext._C` loads this shared library, whose
// static TORCH_LIBRARY registrations define the ops (reached through torch.ops.lenet_ext).
// Its functions: lenet5_forward(images, *params) calls that op from C++ (ops.lenet5_forward's
// way in); cpu_isa() says which CPU kernels this process runs, cpu_isas() each kernel's
// instruction set; cuda_kernels() and set_cuda_kernels("v1"|"v2") read and set flags.h's CUDA
// kernel generation.
#include <ATen/PythonTorchFunctionTLS.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <Python.h>
#include <torch/csrc/Exceptions.h>
#include <torch/csrc/autograd/python_variable.h>

#include <cstring>

#include "flags.h"

namespace lenet_ext {
namespace cpu {
const char* cpu_isa();
const char* cpu_kernel_isa(const char* kernel);
}  // namespace cpu
}  // namespace lenet_ext

namespace {

PyObject* cpu_isa(PyObject*, PyObject*) { return PyUnicode_FromString(lenet_ext::cpu::cpu_isa()); }

// The CPU kernels (kernels.h's CpuKernels fields) and the instruction set each runs.
PyObject* cpu_isas(PyObject*, PyObject*) {
  static const char* const kernels[] = {"conv_forward",     "conv_backward",     "dense_forward",
                                        "dense_input_grad", "dense_weight_grad", "lenet5_forward"};
  PyObject* isas = PyDict_New();
  if (isas == nullptr) return nullptr;
  for (const char* kernel : kernels) {
    PyObject* isa = PyUnicode_FromString(lenet_ext::cpu::cpu_kernel_isa(kernel));
    if (isa == nullptr || PyDict_SetItemString(isas, kernel, isa) != 0) {
      Py_XDECREF(isa);
      Py_DECREF(isas);
      return nullptr;
    }
    Py_DECREF(isa);
  }
  return isas;
}

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

// lenet5_forward(images, *params): the op lenet_ext::lenet5_forward, called through the dispatcher
// (autograd, inference mode, dispatch modes, fake tensors and the device's kernel all as through
// torch.ops) with its C++ signature, without torch.ops' boxed call: its Python arguments parsed
// against the schema into a stack of IValues (docs/performance.md, "Batch 1"). The GIL is released
// around the op, as torch.ops does; c10 errors become the same Python exceptions. Returns
// NotImplemented where torch.ops must take the call: not 11 arguments, an argument that is not
// exactly a tensor or a parameter (a subclass may override __torch_function__), or a
// __torch_function__ mode on; the caller must not call it while torch.compile traces (dynamo
// cannot trace into it).
constexpr Py_ssize_t kLeNet5Args = 11;

PyObject* lenet5_forward(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  HANDLE_TH_ERRORS
  if (nargs != kLeNet5Args || at::impl::torch_function_mode_enabled()) Py_RETURN_NOTIMPLEMENTED;
  for (Py_ssize_t i = 0; i < nargs; ++i)
    if (!THPVariable_CheckExact(args[i])) Py_RETURN_NOTIMPLEMENTED;
  using T = const at::Tensor&;
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("lenet_ext::lenet5_forward", "")
                             .typed<at::Tensor(T, T, T, T, T, T, T, T, T, T, T)>();
  const auto a = [&](int i) -> T { return THPVariable_Unpack(args[i]); };
  at::Tensor out;
  {
    pybind11::gil_scoped_release no_gil;
    out = op.call(a(0), a(1), a(2), a(3), a(4), a(5), a(6), a(7), a(8), a(9), a(10));
  }
  return THPVariable_Wrap(std::move(out));
  END_HANDLE_TH_ERRORS
}

PyMethodDef methods[] = {
    {"lenet5_forward", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(lenet5_forward)), METH_FASTCALL,
     "The op lenet_ext::lenet5_forward through the dispatcher, or NotImplemented."},
    {"cpu_isa", cpu_isa, METH_NOARGS, "The instruction set of the CPU kernels in use."},
    {"cpu_isas", cpu_isas, METH_NOARGS, "Each CPU kernel's instruction set."},
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
