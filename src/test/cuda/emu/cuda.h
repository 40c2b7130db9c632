// The emulator's stand-in for the CUDA driver API header <cuda.h>: only the tensor-map type the Hopper attention kernels
// name in their signatures (the emulator runs no TMA copy, so its contents are never read).
#pragma once

#include "emu.h"

struct alignas(64) CUtensorMap {
    unsigned long long opaque[16];
};
