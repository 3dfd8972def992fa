// The Python module lenet_ext._C: `import lenet_ext._C` loads this shared library, whose
// static TORCH_LIBRARY registrations define the ops (reached through torch.ops.lenet_ext).
// Its one function, cpu_isa(), says which CPU kernels this process runs ("avx2" or "base").
#include <Python.h>

namespace lenet_ext {
namespace cpu {
const char* cpu_isa();
}
}  // namespace lenet_ext

namespace {

PyObject* cpu_isa(PyObject*, PyObject*) { return PyUnicode_FromString(lenet_ext::cpu::cpu_isa()); }

PyMethodDef methods[] = {
    {"cpu_isa", cpu_isa, METH_NOARGS,
     "The instruction set of the CPU kernels in use: 'avx2' (AVX2 + FMA) or 'base' (the build's baseline)."},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, methods};
  return PyModule_Create(&module_def);
}
}
