// Grouped-query attention's key/value heads repeated for their query heads (Backend.repeatHeads, Hugging Face's
// repeat_kv): x [rows, kvHeads·D] → out [rows, kvHeads·groups·D], out head h = x head h / groups; and the gradient,
// dx head j = Σ over g < groups of dy head j·groups + g, summed in fp32 in group order (deterministic). bf16 storage.
// Element-wise grid-stride loops: a small memory-bound op next to the projections around it.
#include "common.cuh"

extern "C" __global__ void repeat_heads_bf16(bf16* __restrict__ out, const bf16* __restrict__ x, long long rows, int kvHeads,
                                             int groups, int headDim) {
    const long long heads = (long long)kvHeads * groups, n = rows * heads * headDim;
    GRID_STRIDE(i, n) {
        const long long t = i / headDim, r = t / heads;
        const int c = (int)(i - t * headDim), h = (int)(t - r * heads);
        out[i] = x[(r * kvHeads + h / groups) * headDim + c];
    }
}

extern "C" __global__ void repeat_heads_bwd_bf16(bf16* __restrict__ dx, const bf16* __restrict__ dy, long long rows, int kvHeads,
                                                 int groups, int headDim) {
    const long long n = rows * kvHeads * headDim;
    GRID_STRIDE(i, n) {
        const long long t = i / headDim, r = t / kvHeads;
        const int c = (int)(i - t * headDim), j = (int)(t - r * kvHeads);
        const bf16* g = dy + ((r * kvHeads + j) * groups) * headDim + c;
        float s = 0.0f;
        for (int k = 0; k < groups; ++k) s += to_f32(g[(long long)k * headDim]);
        dx[i] = to_bf16(s);
    }
}
