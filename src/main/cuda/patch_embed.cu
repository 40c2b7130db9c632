// nvcc-flags: --use_fast_math
// Patch embedding, paper Eq. 2: out[b·T+t] = (1/K) Σ_k table[tokens[b, t·K+k]]  (K = 1: a plain lookup).
//
// Backward without float atomics, so two runs give bit-identical dTable:
//   1. keys[i] = (token << 32) | i for every token position i (padding and invalid ids get ~0);
//   2. bitonic sort of the keys (unique keys, so the result does not depend on scheduling);
//   3. every run of equal tokens is owned by one block; each thread owns one column of that vocab row and
//      adds the run's dOut rows in position order, then does a single += into dTable.
// Sorting 2^16 keys costs ~20 small launches; the frequent-token imbalance (one block walks a long run) is
// bounded by the run length and keeps the sum order fixed.
// fast-math is safe here: sums and one multiply by 1/K, no transcendental functions.
#include "common.cuh"

#define SORT_TILE 2048            // keys sorted in shared memory by one block (16 KiB)
#define SORT_THREADS (SORT_TILE / 2)

constexpr int PE_FWD_THREADS = 256;  // CudaPatchEmbed.FWD_THREADS: 8 warps, one row each
constexpr int PE_UNROLL = 4;         // 16-byte groups per lane in flight (d = 1024: the whole row in one step)

// Forward. One warp per output row (grid-stride over rows), lanes over 16-byte column groups: a lane issues the loads
// of PE_UNROLL groups before adding any, so a warp has a whole 2 KB row in flight, and no block is left with idle
// threads when d/8 is below the block size (the earlier block-per-row layout ran 8192 blocks of one group per thread).
// An out-of-range token id makes its row NaN instead of reading outside the table. Sums run over k in order in fp32,
// then one multiply by 1/K.
extern "C" __global__ void __launch_bounds__(PE_FWD_THREADS)
patch_embed_fwd_bf16(bf16* __restrict__ out, const bf16* __restrict__ table, const int* __restrict__ tokens, int rows,
                     int K, int d, int vocab) {
    const float invK = 1.0f / (float)K;
    const int lane = threadIdx.x & 31, warps = blockDim.x >> 5;
    const bool vec = (d & 7) == 0 && aligned16(table) && aligned16(out);  // then every row start is aligned too
    for (long long r = (long long)blockIdx.x * warps + (threadIdx.x >> 5); r < rows; r += (long long)gridDim.x * warps) {
        const int* tok = tokens + r * K;
        bool valid = true;
        for (int k = 0; k < K; ++k) valid &= tok[k] >= 0 && tok[k] < vocab;
        bf16* o = out + r * d;
        if (!valid) {
            for (int c = lane; c < d; c += 32) o[c] = to_bf16(__int_as_float(0x7fc00000));
            continue;
        }
        if (vec) {
            const int groups = d / 8;
            for (int g0 = lane; g0 < groups; g0 += 32 * PE_UNROLL) {
                float acc[PE_UNROLL][8];
#pragma unroll
                for (int u = 0; u < PE_UNROLL; ++u)
#pragma unroll
                    for (int i = 0; i < 8; ++i) acc[u][i] = 0.0f;
                for (int k = 0; k < K; ++k) {
                    const bf16x8* src = reinterpret_cast<const bf16x8*>(table + (long long)tok[k] * d);
                    bf16x8 v[PE_UNROLL];
#pragma unroll
                    for (int u = 0; u < PE_UNROLL; ++u)
                        if (g0 + 32 * u < groups) v[u] = src[g0 + 32 * u];
#pragma unroll
                    for (int u = 0; u < PE_UNROLL; ++u)
                        if (g0 + 32 * u < groups) {
                            float f[8];
                            unpack8(v[u], f);
#pragma unroll
                            for (int i = 0; i < 8; ++i) acc[u][i] += f[i];
                        }
                }
#pragma unroll
                for (int u = 0; u < PE_UNROLL; ++u)
                    if (g0 + 32 * u < groups) {
#pragma unroll
                        for (int i = 0; i < 8; ++i) acc[u][i] *= invK;
                        reinterpret_cast<bf16x8*>(o)[g0 + 32 * u] = pack8(acc[u]);
                    }
            }
        } else {
            for (int c = lane; c < d; c += 32) {
                float acc = 0.0f;
                for (int k = 0; k < K; ++k) acc += to_f32(table[(long long)tok[k] * d + c]);
                o[c] = to_bf16(acc * invK);
            }
        }
    }
}

// Step 1: sortable keys. `padded` is a power of two >= max(n, SORT_TILE).
extern "C" __global__ void patch_embed_keys(const int* __restrict__ tokens, long long n, int vocab,
                                            unsigned long long* __restrict__ keys, long long padded) {
    GRID_STRIDE(i, padded) {
        unsigned long long key = ~0ull;
        if (i < n) {
            const int t = tokens[i];
            if (t >= 0 && t < vocab) key = ((unsigned long long)(unsigned)t << 32) | (unsigned long long)i;
        }
        keys[i] = key;
    }
}

__device__ __forceinline__ void bitonic_tile_pass(unsigned long long* s, long long tileBase, long long k, int j) {
    const int p = threadIdx.x;                     // pair index in [0, SORT_TILE/2)
    const int i = (p / j) * 2 * j + (p % j);       // lower element of the pair, local
    const int l = i + j;
    const bool ascending = ((tileBase + i) & k) == 0;
    const unsigned long long a = s[i], b = s[l];
    if ((a > b) == ascending) { s[i] = b; s[l] = a; }
}

// Step 2a: each block fully bitonic-sorts its tile (all k <= SORT_TILE). Launch SORT_THREADS threads.
extern "C" __global__ void bitonic_sort_tiles(unsigned long long* __restrict__ keys) {
    __shared__ unsigned long long s[SORT_TILE];
    const long long base = (long long)blockIdx.x * SORT_TILE;
    s[threadIdx.x] = keys[base + threadIdx.x];
    s[threadIdx.x + SORT_THREADS] = keys[base + threadIdx.x + SORT_THREADS];
    __syncthreads();
    for (int k = 2; k <= SORT_TILE; k <<= 1) {
        for (int j = k >> 1; j > 0; j >>= 1) {
            bitonic_tile_pass(s, base, k, j);
            __syncthreads();
        }
    }
    keys[base + threadIdx.x] = s[threadIdx.x];
    keys[base + threadIdx.x + SORT_THREADS] = s[threadIdx.x + SORT_THREADS];
}

// Step 2b: one global compare-exchange pass for a stride j >= SORT_TILE within merge size k.
extern "C" __global__ void bitonic_global_pass(unsigned long long* __restrict__ keys, long long padded, long long k,
                                               long long j) {
    GRID_STRIDE(p, padded / 2) {
        const long long i = (p / j) * 2 * j + (p % j);
        const long long l = i + j;
        const bool ascending = (i & k) == 0;
        const unsigned long long a = keys[i], b = keys[l];
        if ((a > b) == ascending) { keys[i] = b; keys[l] = a; }
    }
}

// Step 2c: the strides j < SORT_TILE of merge size k, done in shared memory per tile.
extern "C" __global__ void bitonic_merge_tiles(unsigned long long* __restrict__ keys, long long k) {
    __shared__ unsigned long long s[SORT_TILE];
    const long long base = (long long)blockIdx.x * SORT_TILE;
    s[threadIdx.x] = keys[base + threadIdx.x];
    s[threadIdx.x + SORT_THREADS] = keys[base + threadIdx.x + SORT_THREADS];
    __syncthreads();
    for (int j = SORT_TILE >> 1; j > 0; j >>= 1) {
        bitonic_tile_pass(s, base, k, j);
        __syncthreads();
    }
    keys[base + threadIdx.x] = s[threadIdx.x];
    keys[base + threadIdx.x + SORT_THREADS] = s[threadIdx.x + SORT_THREADS];
}

// Step 3: dTable[v] += (1/K) Σ_{positions i with token v} dOut[i / K]. One block per run start (grid-stride over
// sorted entries); each (vocab row, column) is written by exactly one thread. When d % 8 == 0 and both tensors are
// 16-byte aligned a thread owns 8 columns: 16-byte dOut loads (several rows of the run in flight) and two float4
// read-modify-writes of dTable, instead of 2- and 4-byte accesses.
extern "C" __global__ void patch_embed_bwd_runs(const unsigned long long* __restrict__ keys, long long n,
                                                const bf16* __restrict__ dOut, float* __restrict__ dTable, int K,
                                                int d) {
    const float invK = 1.0f / (float)K;
    const bool vec = (d & 7) == 0 && aligned16(dOut) && aligned16(dTable);
    for (long long s = blockIdx.x; s < n; s += gridDim.x) {
        const unsigned long long key = keys[s];
        if (key == ~0ull) return;  // sorted: only padding/invalid ids follow
        const unsigned tok = (unsigned)(key >> 32);
        if (s > 0 && (unsigned)(keys[s - 1] >> 32) == tok) continue;  // not the start of a run
        long long end = s + 1;
        while (end < n && keys[end] != ~0ull && (unsigned)(keys[end] >> 32) == tok) ++end;
        float* row = dTable + (long long)tok * d;
        if (vec) {
            const int groups = d / 8;
            for (int g = threadIdx.x; g < groups; g += blockDim.x) {
                // The dTable row is loaded before the run's dOut rows so that both round trips overlap (it was the
                // last link of a dependent chain: key, run end, dOut, dTable). Same arithmetic, same order.
                f32x4* dst = reinterpret_cast<f32x4*>(row) + 2 * g;
                f32x4 a = dst[0], b = dst[1];
                float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
#pragma unroll 4
                for (long long e = s; e < end; ++e) {
                    const long long pos = (long long)(keys[e] & 0xffffffffull);
                    float v[8];
                    unpack8(reinterpret_cast<const bf16x8*>(dOut + (pos / K) * d)[g], v);
#pragma unroll
                    for (int i = 0; i < 8; ++i) acc[i] += v[i];
                }
                a.x += acc[0] * invK, a.y += acc[1] * invK, a.z += acc[2] * invK, a.w += acc[3] * invK;
                b.x += acc[4] * invK, b.y += acc[5] * invK, b.z += acc[6] * invK, b.w += acc[7] * invK;
                dst[0] = a;
                dst[1] = b;
            }
        } else {
            for (int c = threadIdx.x; c < d; c += blockDim.x) {
                float acc = 0.0f;
                for (long long e = s; e < end; ++e) {
                    const long long pos = (long long)(keys[e] & 0xffffffffull);
                    acc += to_f32(dOut[(pos / K) * d + c]);
                }
                row[c] += acc * invK;
            }
        }
    }
}
