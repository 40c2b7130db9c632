// The emulator's stand-in for the CUDA driver API header <cuda.h>: only the tensor-map type the Hopper attention kernels
// take. Its 128 bytes hold the emulator's own encoding (emu::TensorMap, written by the Java tests' EmulatedKernelContext),
// not the driver's.
#pragma once

#include "emu.h"

struct alignas(64) CUtensorMap {
    unsigned long long opaque[16];
};
