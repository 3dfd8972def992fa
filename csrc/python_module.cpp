// An empty Python module, lenet_ext._C, so that `import lenet_ext._C` loads this
// shared library and its static TORCH_LIBRARY registrations run. No Python
// functions are bound here: every op is reached through torch.ops.lenet_ext.
#include <Python.h>

extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}
