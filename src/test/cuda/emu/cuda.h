// The emulator's stand-in for the CUDA driver API header <cuda.h>: the tensor-map type the Hopper attention kernels
// take, and cuTensorMapEncodeTiled for the maps they use (flash_wgmma_test.cu gets it as on a GPU, through
// cudaGetDriverEntryPointByVersion). Its 128 bytes hold the emulator's own encoding (emu::TensorMap; the Java tests'
// EmulatedKernelContext writes the same), not the driver's.
#pragma once

#include "emu.h"

struct alignas(64) CUtensorMap {
    unsigned long long opaque[16];
};

typedef uint32_t cuuint32_t;
typedef uint64_t cuuint64_t;
// The values of CUDA 13's cuda.h (the ones the emulator accepts, and the swizzles and L2 promotions it may be given).
enum CUresult { CUDA_SUCCESS = 0, CUDA_ERROR_INVALID_VALUE = 1 };
enum CUtensorMapDataType { CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 = 9 };
enum CUtensorMapInterleave { CU_TENSOR_MAP_INTERLEAVE_NONE = 0 };
enum CUtensorMapSwizzle {
    CU_TENSOR_MAP_SWIZZLE_NONE = 0, CU_TENSOR_MAP_SWIZZLE_32B, CU_TENSOR_MAP_SWIZZLE_64B, CU_TENSOR_MAP_SWIZZLE_128B
};
enum CUtensorMapL2promotion {
    CU_TENSOR_MAP_L2_PROMOTION_NONE = 0, CU_TENSOR_MAP_L2_PROMOTION_L2_64B, CU_TENSOR_MAP_L2_PROMOTION_L2_128B,
    CU_TENSOR_MAP_L2_PROMOTION_L2_256B
};
enum CUtensorMapFloatOOBfill { CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE = 0 };

// The driver's signature. Only what the emulated TMA load models is accepted (bf16, rank 4, no interleave, 128-byte
// swizzle, rows of 64 elements, element strides 1, zero fill; the L2 promotion is ignored), with the driver's own
// checks on address, strides and box; anything else is CUDA_ERROR_INVALID_VALUE, with a message on stderr.
CUresult cuTensorMapEncodeTiled(CUtensorMap* tensorMap, CUtensorMapDataType tensorDataType, cuuint32_t tensorRank,
                                void* globalAddress, const cuuint64_t* globalDim, const cuuint64_t* globalStrides,
                                const cuuint32_t* boxDim, const cuuint32_t* elementStrides,
                                CUtensorMapInterleave interleave, CUtensorMapSwizzle swizzle,
                                CUtensorMapL2promotion l2Promotion, CUtensorMapFloatOOBfill oobFill);
