// How kernels declare shared memory. Macros, not the `__shared__` keyword, so that the CPU emulator of src/test/cuda/emu
// (PATCHCORE_EMU), which defines them itself, can give each its own meaning: dynamic shared memory has no C++ spelling,
// and static shared memory must start every block poisoned there, as its contents are undefined on a GPU.
#pragma once

#ifndef PATCHCORE_EMU
// The block's dynamic shared memory as an array of T (16-byte aligned).
#define DYNAMIC_SHARED(T, name) extern __shared__ __align__(16) T name[]
// `__shared__ T name dims`: STATIC_SHARED(float, red, [32]) is `__shared__ float red[32]`; a scalar leaves out dims.
#define STATIC_SHARED(T, name, ...) __shared__ T name __VA_ARGS__
#endif
