// nvcc-flags: --use_fast_math
// Patch embedding, paper Eq. 2: out[b·T+t] = (1/K) Σ_k table[tokens[b, t·K+k]]  (K = 1: a plain lookup).
//
// Backward without float atomics, so two runs give bit-identical dTable. Two paths with the same summation order:
// the 32-bit-key radix path at the end of this file (the usual shapes) and this general one:
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
    STATIC_SHARED(unsigned long long, s, [SORT_TILE]);
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
    STATIC_SHARED(unsigned long long, s, [SORT_TILE]);
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

// ------------------------------------------------------------------------------------------------------------------
// Fast backward (CudaPatchEmbed picks it when tokenBits + positionBits ≤ 32, e.g. 65536 positions at V ≤ 65535):
//   1. patch_embed_keys32: key = (token << posBits) | position in one uint32 (an invalid id becomes the sentinel token
//      `vocab`, which sorts last) and, per tile of PE_RX_TILE keys, the histogram of the first radix digit;
//   2. patch_embed_radix_scatter, once per digit (LSD, 2 passes for 2 ≤ tokenBits ≤ 16): a STABLE counting scatter.
//      Keys are unique and the passes stable, so the result is the same as a full sort of the keys: token order, then
//      position order inside a token — the same order the 64-bit bitonic path produces;
//   3. patch_embed_bwd_runs32: one warp per sorted entry; the warp that sits on the first entry of a token's run sums it.
// 4 launches instead of 8 (32K positions: 20) for the bitonic network of the general path.
constexpr int PE_RX_THREADS = 256;                         // CudaPatchEmbed.RADIX_THREADS
constexpr int PE_RX_WARPS = PE_RX_THREADS / 32;
constexpr int PE_RX_ITEMS = 8;                             // keys per lane
constexpr int PE_RX_TILE = PE_RX_THREADS * PE_RX_ITEMS;    // CudaPatchEmbed.RADIX_TILE: keys per block
constexpr int PE_RX_BINS = 256;                            // digits of at most 8 bits
constexpr int PE_BWD_THREADS = 256;                        // CudaPatchEmbed.BWD_THREADS: 8 warps, one entry each
constexpr int PE_BWD_UNROLL = 4;                           // 16-byte column groups per lane (d = 1024: one step)

// Exclusive prefix sum over the block (any multiple of 32 threads up to 1024); `warpTotals` holds one int per warp.
// Ends with the warp totals still being read: a second call needs a __syncthreads before it.
__device__ __forceinline__ int block_exclusive_scan(int v, int* warpTotals) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int x = v;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const int y = __shfl_up_sync(0xffffffffu, x, o);
        if (lane >= o) x += y;
    }
    if (lane == 31) warpTotals[warp] = x;
    __syncthreads();
    int before = 0;
    for (int w = 0; w < warp; ++w) before += warpTotals[w];
    return before + x - v;
}

// Step 1. grid = tiles = ⌈n / PE_RX_TILE⌉, block PE_RX_THREADS. hist: [passes][PE_RX_BINS][tiles] ints; this kernel
// writes pass 0 (digit bits [shift0, shift0 + bits0) of the key) and zeroes the later passes, which the scatters
// count into. Integer atomics only count keys: the counts, hence the order, do not depend on scheduling.
extern "C" __global__ void __launch_bounds__(PE_RX_THREADS)
patch_embed_keys32(const int* __restrict__ tokens, int n, int vocab, int posBits, unsigned* __restrict__ keys,
                   int* __restrict__ hist, int tiles, int histInts, int shift0, int bits0) {
    static_assert(PE_RX_THREADS == PE_RX_BINS, "one thread per digit");
    STATIC_SHARED(int, count, [PE_RX_BINS]);
    for (int i = PE_RX_BINS * tiles + blockIdx.x * PE_RX_THREADS + threadIdx.x; i < histInts; i += gridDim.x * PE_RX_THREADS)
        hist[i] = 0;
    count[threadIdx.x] = 0;
    __syncthreads();
    const unsigned mask = (1u << bits0) - 1u;
    const int tileBase = blockIdx.x * PE_RX_TILE;
#pragma unroll
    for (int j = 0; j < PE_RX_ITEMS; ++j) {
        const int i = tileBase + j * PE_RX_THREADS + threadIdx.x;
        if (i < n) {
            const int t = tokens[i];
            const unsigned tok = (t >= 0 && t < vocab) ? (unsigned)t : (unsigned)vocab;
            const unsigned key = (tok << posBits) | (unsigned)i;
            keys[i] = key;
            atomicAdd(&count[(key >> shift0) & mask], 1);
        }
    }
    __syncthreads();
    hist[threadIdx.x * tiles + blockIdx.x] = count[threadIdx.x];
}

// Step 2, one pass: dst = src stably ordered by digit (key >> shift) & (2^bits − 1). grid = tiles, block
// PE_RX_THREADS. hist holds this pass's per-tile digit counts of src ([PE_RX_BINS][tiles]). When nextHist is not null
// the pass also counts the next digit of every key per destination tile (nextHist was zeroed by step 1).
// Stability: warp w of tile b owns src[b·TILE + w·256, +256) and walks it in 32-key chunks in order; a key's place is
// (keys of smaller digits) + (same digit in earlier tiles) + (same digit in earlier warps of this tile) + (same digit
// earlier in this warp's segment), the last from __match_any_sync within each chunk plus a per-warp running count.
extern "C" __global__ void __launch_bounds__(PE_RX_THREADS)
patch_embed_radix_scatter(const unsigned* __restrict__ src, unsigned* __restrict__ dst, int n, int tiles,
                          const int* __restrict__ hist, int shift, int bits, int* __restrict__ nextHist, int nextShift,
                          int nextBits) {
    STATIC_SHARED(int, warpCount, [PE_RX_WARPS][PE_RX_BINS]);
    STATIC_SHARED(int, warpTotals, [PE_RX_WARPS]);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const unsigned mask = (1u << bits) - 1u;

    // This tile's keys first, so their loads overlap the histogram reads below.
    const int segment = blockIdx.x * PE_RX_TILE + warp * (32 * PE_RX_ITEMS);
    unsigned key[PE_RX_ITEMS];
#pragma unroll
    for (int c = 0; c < PE_RX_ITEMS; ++c) {
        const int i = segment + c * 32 + lane;
        key[c] = i < n ? src[i] : 0u;
    }
#pragma unroll
    for (int w = 0; w < PE_RX_WARPS; ++w) warpCount[w][threadIdx.x] = 0;

    // Thread t = digit t: its start in dst for this tile = Σ counts of smaller digits + its counts in earlier tiles.
    int total = 0, earlier = 0;
    for (int b = 0; b < tiles; ++b) {
        const int c = hist[threadIdx.x * tiles + b];
        total += c;
        if (b < (int)blockIdx.x) earlier += c;
    }
    const int digitBase = block_exclusive_scan(total, warpTotals) + earlier;  // has a __syncthreads

    // Rank of each key among the same digit earlier in this warp's segment.
    int rank[PE_RX_ITEMS], digit[PE_RX_ITEMS];
    const unsigned lanesBelow = (1u << lane) - 1u;
#pragma unroll
    for (int c = 0; c < PE_RX_ITEMS; ++c) {
        const bool valid = segment + c * 32 + lane < n;
        const int dg = valid ? (int)((key[c] >> shift) & mask) : PE_RX_BINS;  // invalid lanes match only each other
        const unsigned peers = __match_any_sync(0xffffffffu, dg);
        const int prior = valid ? warpCount[warp][dg] : 0;
        __syncwarp();  // every peer has read the running count before the leader updates it
        if (valid && (peers & lanesBelow) == 0) warpCount[warp][dg] = prior + __popc(peers);
        __syncwarp();
        rank[c] = prior + __popc(peers & lanesBelow);
        digit[c] = dg;
    }
    __syncthreads();
    // Thread t = digit t: turn the per-warp counts into each warp's start for that digit.
    {
        int start = digitBase;
#pragma unroll
        for (int w = 0; w < PE_RX_WARPS; ++w) {
            const int c = warpCount[w][threadIdx.x];
            warpCount[w][threadIdx.x] = start;
            start += c;
        }
    }
    __syncthreads();
    const unsigned nextMask = (1u << nextBits) - 1u;
#pragma unroll
    for (int c = 0; c < PE_RX_ITEMS; ++c) {
        if (digit[c] == PE_RX_BINS) continue;
        const int at = warpCount[warp][digit[c]] + rank[c];
        dst[at] = key[c];
        if (nextHist != nullptr)
            atomicAdd(&nextHist[(int)((key[c] >> nextShift) & nextMask) * tiles + at / PE_RX_TILE], 1);
    }
}

// Step 3: dTable[v] += (1/K) Σ_{positions p with token v, ascending} dOut[p / K]. One warp per sorted entry
// (grid-stride); the warp on a run's first entry owns the whole vocabulary row, so each (row, column) has one writer.
// Lane j first loads keys[s + j] — the entry, and in the same round trip up to 31 following ones to find the run's end
// — then each lane owns 16-byte column groups g = lane + 32u, u < PE_BWD_UNROLL: the dTable loads are issued before
// the run's dOut loads. Per column: acc = Σ dOut in position order (fp32, from 0), then dTable += acc · (1/K), exactly
// the arithmetic of patch_embed_bwd_runs. Requires d % 8 == 0 and 16-byte aligned dOut and dTable (the launcher checks).
extern "C" __global__ void __launch_bounds__(PE_BWD_THREADS, 2)
patch_embed_bwd_runs32(const unsigned* __restrict__ keys, int n, int posBits, int vocab, const bf16* __restrict__ dOut,
                       float* __restrict__ dTable, int K, int d) {
    const float invK = 1.0f / (float)K;
    const int lane = threadIdx.x & 31, warps = PE_BWD_THREADS / 32;
    const unsigned posMask = (posBits == 32) ? 0xffffffffu : ((1u << posBits) - 1u);
    const int groups = d / 8;
    if ((d & 7) != 0 || !aligned16(dOut) || !aligned16(dTable)) return;  // uniform; the launcher never sends these
    for (int s = blockIdx.x * warps + (threadIdx.x >> 5); s < n; s += gridDim.x * warps) {
        const unsigned mine = s + lane < n ? keys[s + lane] : 0xffffffffu;
        const unsigned before = s > 0 ? keys[s - 1] : 0xffffffffu;  // same address in every lane: one transaction
        const unsigned tok = __shfl_sync(0xffffffffu, mine, 0) >> posBits;
        if (tok >= (unsigned)vocab) return;                          // sorted: only invalid ids from here on
        if (s > 0 && (before >> posBits) == tok) continue;           // not the first entry of its run
        // Run length: the first lane (≥ 1) whose key has another token, window by window.
        unsigned window = mine;
        int start = s, end = s + 1;
        for (;;) {
            const int i = start + lane;
            const bool same = i < n && (window >> posBits) == tok;
            const unsigned stop = __ballot_sync(0xffffffffu, !same) & (start == s ? ~1u : ~0u);
            if (stop != 0) {
                end = start + __ffs(stop) - 1;
                break;
            }
            start += 32;
            window = start + lane < n ? keys[start + lane] : 0xffffffffu;
        }
        float* row = dTable + (size_t)tok * d;
        for (int g0 = 0; g0 < groups; g0 += 32 * PE_BWD_UNROLL) {
            f32x4 ta[PE_BWD_UNROLL], tb[PE_BWD_UNROLL];
            float acc[PE_BWD_UNROLL][8];
#pragma unroll
            for (int u = 0; u < PE_BWD_UNROLL; ++u) {
                const int g = g0 + lane + 32 * u;
                if (g < groups) {
                    const f32x4* t = reinterpret_cast<const f32x4*>(row) + 2 * g;
                    ta[u] = t[0];
                    tb[u] = t[1];
                }
#pragma unroll
                for (int i = 0; i < 8; ++i) acc[u][i] = 0.0f;
            }
            unsigned chunk = mine;  // keys of entries [cs, cs + 32), lane j holding entry cs + j
            for (int cs = s; cs < end; cs += 32) {
                if (cs != s) chunk = cs + lane < n ? keys[cs + lane] : 0u;
                const int m = min(32, end - cs);
                for (int j = 0; j < m; ++j) {
                    const unsigned pos = __shfl_sync(0xffffffffu, chunk, j) & posMask;
                    const bf16x8* src = reinterpret_cast<const bf16x8*>(dOut + (size_t)(pos / (unsigned)K) * d);
                    bf16x8 v[PE_BWD_UNROLL];
#pragma unroll
                    for (int u = 0; u < PE_BWD_UNROLL; ++u)
                        if (g0 + lane + 32 * u < groups) v[u] = src[g0 + lane + 32 * u];
#pragma unroll
                    for (int u = 0; u < PE_BWD_UNROLL; ++u)
                        if (g0 + lane + 32 * u < groups) {
                            float f[8];
                            unpack8(v[u], f);
#pragma unroll
                            for (int i = 0; i < 8; ++i) acc[u][i] += f[i];
                        }
                }
            }
#pragma unroll
            for (int u = 0; u < PE_BWD_UNROLL; ++u) {
                const int g = g0 + lane + 32 * u;
                if (g < groups) {
                    f32x4 a = ta[u], b = tb[u];
                    a.x += acc[u][0] * invK, a.y += acc[u][1] * invK, a.z += acc[u][2] * invK, a.w += acc[u][3] * invK;
                    b.x += acc[u][4] * invK, b.y += acc[u][5] * invK, b.z += acc[u][6] * invK, b.w += acc[u][7] * invK;
                    f32x4* t = reinterpret_cast<f32x4*>(row) + 2 * g;
                    t[0] = a;
                    t[1] = b;
                }
            }
        }
    }
}
