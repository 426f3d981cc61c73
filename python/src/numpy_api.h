// numpy's C API, shared by every binding file (one PY_ARRAY_UNIQUE_SYMBOL; module.cpp imports it).
// We use it on the hot path: PyArray_Check + direct field access cost a few ns, where generic
// buffer-protocol parsing costs hundreds, and the tiny-shape ops must cost ~1 µs in total.
#pragma once

#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#define PY_ARRAY_UNIQUE_SYMBOL lightning_core_ARRAY_API
#ifndef LC_NUMPY_IMPORT
#define NO_IMPORT_ARRAY
#endif
#include <Python.h>
#include <numpy/arrayobject.h>
