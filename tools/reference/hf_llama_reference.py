#!/usr/bin/env python3
"""Hugging Face LlamaForCausalLM's forward in float64 NumPy, written from transformers' modeling_llama.py (not from
patchcore's code), on a small model whose weights are a formula, so that HuggingFaceModelTest can pin the mean
next-token loss it prints and compare patchcore's forward of the same weights read from a Hugging Face folder.

    python3 tools/reference/hf_llama_reference.py                 # prints the loss (multi-head attention)
    python3 tools/reference/hf_llama_reference.py --kv-heads 1    # grouped-query: both query heads share one
    python3 tools/reference/hf_llama_reference.py --heads 4 --kv-heads 2  # query heads 0, 1 read kv head 0; 2, 3 kv head 1
    python3 tools/reference/hf_llama_reference.py --llama3 8 1 4 64   # rope_scaling {"rope_type": "llama3", factor 8,
                                                                      # low/high_freq_factor 1/4, original context 64}

The formula (both sides): parameter number k (in LlamaForCausalLM's order: embed_tokens, per layer input_layernorm,
q/k/v/o_proj, post_attention_layernorm, gate/up/down_proj, then norm, lm_head), flat element i:
matrices 0.1 * sin(0.37 * i + 1.3 * k), norm gains 1 + 0.1 * cos(i + k). Tokens t_j = (37 j + 11) mod V, j < 40.
"""
import argparse

import numpy as np

V, D, F, L, H, THETA, EPS, T = 97, 32, 88, 2, 2, 500.0, 1e-5, 40
DH = D // H
KV = H  # key/value heads (--kv-heads)
LLAMA3 = None  # (factor, low_freq_factor, high_freq_factor, original_max_position_embeddings) (--llama3)


def names():
    out = [("model.embed_tokens.weight", (V, D))]
    for l in range(L):
        p = f"model.layers.{l}."
        out += [(p + "input_layernorm.weight", (D,)), (p + "self_attn.q_proj.weight", (D, D)),
                (p + "self_attn.k_proj.weight", (KV * DH, D)), (p + "self_attn.v_proj.weight", (KV * DH, D)),
                (p + "self_attn.o_proj.weight", (D, D)), (p + "post_attention_layernorm.weight", (D,)),
                (p + "mlp.gate_proj.weight", (F, D)), (p + "mlp.up_proj.weight", (F, D)), (p + "mlp.down_proj.weight", (D, F))]
    return out + [("model.norm.weight", (D,)), ("lm_head.weight", (V, D))]


def weights():
    w = {}
    for k, (name, shape) in enumerate(names()):
        i = np.arange(int(np.prod(shape)), dtype=np.float64)
        v = 0.1 * np.sin(0.37 * i + 1.3 * k) if len(shape) == 2 else 1 + 0.1 * np.cos(i + k)
        w[name] = v.astype(np.float32).astype(np.float64).reshape(shape)  # the float32 values a safetensors file holds
    return w


def rms_norm(x, g):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + EPS) * g


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return np.concatenate([-x2, x1], axis=-1)


def llama3_inv_freq(inv_freq):
    """transformers' _compute_llama3_parameters (modeling_rope_utils.py)."""
    factor, low_freq_factor, high_freq_factor, old_context_len = LLAMA3
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    wavelen = 2 * np.pi / inv_freq
    inv_freq_llama = np.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed_inv_freq = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
    is_medium_freq = ~(wavelen < high_freq_wavelen) & ~(wavelen > low_freq_wavelen)
    return np.where(is_medium_freq, smoothed_inv_freq, inv_freq_llama)


def forward(w, tokens):
    t = len(tokens)
    x = w["model.embed_tokens.weight"][tokens]
    inv_freq = 1.0 / THETA ** (np.arange(0, DH, 2, dtype=np.float64) / DH)
    if LLAMA3 is not None:
        inv_freq = llama3_inv_freq(inv_freq)
    freqs = np.outer(np.arange(t, dtype=np.float64), inv_freq)
    emb = np.concatenate([freqs, freqs], axis=-1)
    cos, sin = np.cos(emb)[:, None, :], np.sin(emb)[:, None, :]
    mask = np.triu(np.full((t, t), -np.inf), 1)
    for l in range(L):
        p = f"model.layers.{l}."
        h = rms_norm(x, w[p + "input_layernorm.weight"])
        q = (h @ w[p + "self_attn.q_proj.weight"].T).reshape(t, H, DH)
        k = (h @ w[p + "self_attn.k_proj.weight"].T).reshape(t, KV, DH)
        v = (h @ w[p + "self_attn.v_proj.weight"].T).reshape(t, KV, DH)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k, v = np.repeat(k, H // KV, axis=1), np.repeat(v, H // KV, axis=1)  # repeat_kv: query head h reads h // groups
        s = np.einsum("ihd,jhd->hij", q, k) / np.sqrt(DH) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        a = np.einsum("hij,jhd->ihd", s, v).reshape(t, D)
        x = x + a @ w[p + "self_attn.o_proj.weight"].T
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"])
        g = h @ w[p + "mlp.gate_proj.weight"].T
        x = x + ((g / (1 + np.exp(-g))) * (h @ w[p + "mlp.up_proj.weight"].T)) @ w[p + "mlp.down_proj.weight"].T
    return rms_norm(x, w["model.norm.weight"]) @ w["lm_head.weight"].T


def main():
    global KV, H, DH, LLAMA3
    parser = argparse.ArgumentParser(description="Hugging Face LlamaForCausalLM's loss on the formula model")
    parser.add_argument("--heads", type=int, default=H, help=f"query heads (default {H})")
    parser.add_argument("--kv-heads", type=int, help="key/value heads (default: as many as query heads)")
    parser.add_argument("--llama3", type=float, nargs=4, metavar=("FACTOR", "LOW", "HIGH", "ORIGINAL_CONTEXT"),
                        help="LLaMA-3's RoPE scaling")
    args = parser.parse_args()
    LLAMA3 = args.llama3
    H, DH = args.heads, D // args.heads
    KV = args.kv_heads or H
    tokens = np.array([(37 * j + 11) % V for j in range(T)])
    logits = forward(weights(), tokens)[:-1]
    m = logits.max(-1, keepdims=True)
    logp = logits - m - np.log(np.exp(logits - m).sum(-1, keepdims=True))
    print(f"{-logp[np.arange(T - 1), tokens[1:]].mean():.10f}")


if __name__ == "__main__":
    main()
