#!/usr/bin/env python3
"""Independent NumPy reference checker for the numbers patchcore reports.

A float64 re-implementation of what a patchcore run computes, written from the paper
(/work/shared/paper/patch-level-training.md: Eq. 2 and 3, App. A) and from patchcore's documentation
(README.md, docs/training.md, docs/data-format.md), not from its Java code. It reads a run's files
(checkpoints in safetensors, config.json, trainer.json, metrics.jsonl) and the prepared dataset
(token shards), recomputes a number and prints it next to patchcore's:

  loss       the validation losses a run logged (metrics.jsonl, type "val")
  evalsplit  the loss `patchcore eval` prints (the whole split in blocks of the context)
  lr         every learning rate in metrics.jsonl, against linear warmup + cosine decay
  adamw      one AdamW update, from two consecutive checkpoints
  gradcheck  the gradient patchcore applied in that update, against central finite differences
  trainloss  the training loss metrics.jsonl logged for the step after a checkpoint

Each subcommand exits with 1 if a number falls outside its tolerance (printed beside it), else 0.
Requires only Python 3 and NumPy. Examples (see tools/reference/README.md):

  python3 tools/reference/numpy_check.py loss /tmp/ref-run/checkpoints/step-00000133
  python3 tools/reference/numpy_check.py evalsplit /tmp/ref-run --expect 2.7804
  python3 tools/reference/numpy_check.py adamw /tmp/ref-step/checkpoints/step-0000001{7,8}

A checkpoint argument is a checkpoint folder, or a run folder (meaning its latest checkpoint).

The training windows' order (which windows a step read: trainloss, gradcheck) follows docs/data-format.md
("Order and resuming": SplitMix64, derive(), the bounded draw, the Fisher-Yates shuffle, the stage's seed
--seed + its index). Those details were written into the docs after this tool first had to take them from
patchcore's sampler; a wrong order would show as a training loss that does not match.
"""
import argparse
import json
import math
import os
import struct
import sys
from pathlib import Path

import numpy as np


class Refusal(Exception):
    """Something this tool cannot check (a missing file, an unsupported run): exit code 2, unlike a mismatch (1)."""

# Tolerances. patchcore computes in float32 (accumulating losses in double); this tool in float64.
LOSS_RTOL = 1e-6  # a loss logged to full precision in metrics.jsonl
EVAL_ATOL = 5.1e-5  # `patchcore eval` prints 4 decimals
LR_RTOL = 1e-6  # metrics.jsonl logs the float32 learning rate
ADAMW_ULPS = 8.0  # updated weights, in float32 ulps of the largest of |W_a|, |W_b| and |update|
GRAD_RTOL = 1e-4  # directional derivative vs finite difference
CLIP_RTOL = 1e-4  # norm of the applied gradient vs min(logged norm, clip)
MOMENT_RTOL = 1e-6  # second moments vs the gradient implied by the first moments


# ---------------------------------------------------------------------------------------------- files

def default_data_dir():
    """The bundled corpus as `train` prepares it: $XDG_CACHE_HOME/patchcore/brown-byte, else ~/.cache/..."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "patchcore" / "brown-byte"


def read_safetensors(path):
    """{name: float64 array} of a float32 safetensors file."""
    raw = Path(path).read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + header_len])
    header.pop("__metadata__", None)
    base = 8 + header_len
    tensors = {}
    for name, t in header.items():
        if t["dtype"] != "F32":
            raise Refusal(f"{path}: {name} is {t['dtype']}, expected F32")
        start, end = t["data_offsets"]
        tensors[name] = np.frombuffer(raw[base + start:base + end], "<f4").reshape(t["shape"]).astype(np.float64)
    return tensors


def read_shard(path):
    """Tokens of a shard (docs/data-format.md, "Shard file"), as int64."""
    if not Path(path).is_file():
        raise Refusal(f"{path} not found: name the run's dataset folder with --data (the default, the bundled "
                         f"corpus, is prepared by patchcore's first `train`)")
    raw = Path(path).read_bytes()
    if raw[:8] != b"PCTOKENS":
        raise Refusal(f"{path}: not a patchcore token shard")
    version, width = struct.unpack("<II", raw[8:16])
    (count,) = struct.unpack("<Q", raw[24:32])
    (header_size,) = struct.unpack("<I", raw[40:44])
    if version != 1 or width not in (2, 4):
        raise Refusal(f"{path}: unsupported shard version {version} / token width {width}")
    tokens = np.frombuffer(raw[header_size:header_size + count * width], "<u2" if width == 2 else "<u4")
    if len(tokens) != count:
        raise Refusal(f"{path}: truncated ({len(tokens)} of {count} tokens)")
    return tokens.astype(np.int64)


class Checkpoint:
    """A checkpoint folder (docs/training.md, "Checkpoints and resume") and the run it belongs to."""

    def __init__(self, path):
        path = Path(path)
        latest = path / "checkpoints" / "latest"
        if latest.is_file():
            path = path / "checkpoints" / latest.read_text().strip()
        self.path = path
        if not (path / "model.safetensors").is_file():
            raise Refusal(f"{path}: not a checkpoint folder or a run folder with a checkpoint")
        self.weights = read_safetensors(path / "model.safetensors")
        self.config = json.loads((path / "config.json").read_text())
        trainer = json.loads((path / "trainer.json").read_text())
        self.train = trainer["train"]
        self.state = trainer["state"]
        self.optimizer_step = trainer["optimizerStep"]
        self.run = path.parent.parent
        if str(trainer.get("dataset", "")).startswith("finetune:"):
            raise Refusal(f"{path}: a fine-tuning run (finetune) is not supported: only train's runs")
        if trainer["multiEpoch"]:
            raise Refusal(f"{path}: multi-epoch runs (--epochs) are not supported")
        patch = self.train["patch"]
        if patch["mode"] != "CONSECUTIVE" or patch["inputProjection"] or patch["outputProjection"] \
                or patch["shortContext"]:
            raise Refusal(f"{path}: only the default patch stage is supported (no mixup, projections or "
                             f"short patch context)")

    def moments(self):
        """{name: (exp_avg, exp_avg_sq)}, cut to the weights' rows (the moments keep the padded vocabulary
        rows, which must be zero); empty at a stage end, where the optimizer state is not saved."""
        tensors = read_safetensors(self.path / "optimizer.safetensors")
        out = {}
        for name, w in self.weights.items():
            if name + ".exp_avg" not in tensors:
                continue
            m, v = tensors[name + ".exp_avg"], tensors[name + ".exp_avg_sq"]
            if np.abs(m[w.shape[0]:]).max(initial=0) or np.abs(v[w.shape[0]:]).max(initial=0):
                raise Refusal(f"{self.path}: {name}: the moments of the padding rows are not zero")
            out[name] = (m[:w.shape[0]], v[:w.shape[0]])
        return out

    def logged(self, kind, global_step):
        """The metrics.jsonl record of a type ("train", "val") at a global step, or None."""
        with open(self.run / "metrics.jsonl") as f:
            for line in f:
                rec = json.loads(line)
                if rec["type"] == kind and rec["global_step"] == global_step:
                    return rec
        return None

    def logged_or_refuse(self, kind, global_step):
        """The record logged() finds; a Refusal if the run did not log it."""
        rec = self.logged(kind, global_step)
        if rec is None:
            raise Refusal(f"{self.run / 'metrics.jsonl'} has no {kind} record at global step {global_step}")
        return rec


# ---------------------------------------------------------------------------------------------- model

def rmsnorm(x, weight, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * weight


def rope(x, theta):
    """Rotary embedding in Hugging Face LLaMA's layout (rotate_half); x: [B, H, T, Dh], position = row t."""
    _, _, T, D = x.shape
    angle = np.arange(T)[:, None] * theta ** (-np.arange(0, D, 2) / D)[None, :]
    cos, sin = np.cos(angle), np.sin(angle)
    x1, x2 = x[..., :D // 2], x[..., D // 2:]
    return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)


def forward(W, cfg, ids, K):
    """LlamaForCausalLM on [B, K*T] token ids read as T patches: logits [B, T, V], one per patch."""
    if cfg["hidden_act"] != "silu":
        raise Refusal("only SiLU is implemented")
    if cfg.get("rope_scaling"):
        raise Refusal("only the plain RoPE is implemented (this model's is scaled)")
    B, L = ids.shape
    T = L // K
    d, H = cfg["hidden_size"], cfg["num_attention_heads"]
    KV = cfg.get("num_key_value_heads") or H  # grouped-query attention: query head h reads key/value head h // (H // KV)
    Dh = d // H
    eps, theta = cfg["rms_norm_eps"], cfg["rope_theta"]
    x = W["model.embed_tokens.weight"][ids].reshape(B, T, K, d).mean(2)  # Eq. 2: mean of K embeddings
    causal = np.triu(np.full((T, T), -np.inf), 1)

    def heads(h, n=H):
        return h.reshape(B, T, n, Dh).transpose(0, 2, 1, 3)

    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        h = rmsnorm(x, W[p + "input_layernorm.weight"], eps)
        q = rope(heads(h @ W[p + "self_attn.q_proj.weight"].T), theta)
        k = np.repeat(rope(heads(h @ W[p + "self_attn.k_proj.weight"].T, KV), theta), H // KV, axis=1)
        v = np.repeat(heads(h @ W[p + "self_attn.v_proj.weight"].T, KV), H // KV, axis=1)
        s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(Dh) + causal
        a = np.exp(s - s.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        x = x + (a @ v).transpose(0, 2, 1, 3).reshape(B, T, d) @ W[p + "self_attn.o_proj.weight"].T
        h = rmsnorm(x, W[p + "post_attention_layernorm.weight"], eps)
        g = h @ W[p + "mlp.gate_proj.weight"].T
        u = h @ W[p + "mlp.up_proj.weight"].T
        x = x + (g / (1 + np.exp(-g)) * u) @ W[p + "mlp.down_proj.weight"].T
    head = W["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else W["lm_head.weight"]  # tied: one matrix
    return rmsnorm(x, W["model.norm.weight"], eps) @ head.T


def patch_loss(W, cfg, windows, K):
    """Eq. 3 normalized as in App. A: windows [B, K*(T+1)]; patch t's one distribution scores the K tokens
    of patch t+1; the mean over B*T*K terms. K = 1 is the ordinary next-token loss."""
    B, L = windows.shape
    T = L // K - 1
    logits = forward(W, cfg, windows[:, :K * T], K)
    targets = windows[:, K:].reshape(B, T, K)
    z = logits - logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return -np.take_along_axis(logp, targets, axis=-1).mean()


def mean_loss(W, cfg, windows, K, chunk=64):
    """patch_loss over many equal windows, in chunks (each window weighs the same)."""
    total = sum(patch_loss(W, cfg, windows[i:i + chunk], K) * len(windows[i:i + chunk])
                for i in range(0, len(windows), chunk))
    return total / len(windows)


# ---------------------------------------------------------------------------------------------- data

def windows_at(tokens, K, T, starts):
    """Windows of K*(T+1) tokens starting at token w*K*T for each w (docs/data-format.md, "Stride K*T")."""
    return np.stack([tokens[w * K * T:w * K * T + K * (T + 1)] for w in starts])


def window_count(n_tokens, K, T):
    return (n_tokens - K * (T + 1)) // (K * T) + 1


MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def splitmix64_mix(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def shuffled_order(n, seed, epoch):
    """The epoch's window order: Fisher-Yates driven by SplitMix64 seeded with derive(seed, epoch)
    (see the module docstring for what here is not from the documents)."""
    state = splitmix64_mix((splitmix64_mix(seed & MASK64) + epoch * GOLDEN) & MASK64)
    order = list(range(n))
    for i in range(n - 1, 0, -1):
        bound = i + 1
        threshold = (1 << 32) % bound
        while True:  # unbiased index in [0, bound) from the high 32 bits, multiply-and-reject
            state = (state + GOLDEN) & MASK64
            m = (splitmix64_mix(state) >> 32) * bound
            if m & 0xFFFFFFFF >= threshold:
                break
        j = m >> 32
        order[i], order[j] = order[j], order[i]
    return order


def stage_plan(train):
    """Stages of a single-pass run (docs/training.md, "Stage plan"): dicts with name, K, steps, the
    sequences per step, the validation micro-batch and the stage's share [begin, end) of the steps."""
    total, K = train["steps"], train["patchSize"]
    patch_steps = math.floor(train["lambda"] * total + 0.5) if K > 1 else 0
    tokens_per_step = train["batch"] * train["accum"]  # in sequences of T tokens
    stages = []
    if patch_steps:
        if tokens_per_step % K:
            raise Refusal("batch x accum must be divisible by K")
        seqs = tokens_per_step // K  # K times longer sequences: the same tokens per step
        micro = min(train["batch"], seqs)  # accumulation is cut first, then the micro-batch
        if seqs % micro:
            raise Refusal(f"cannot tell the patch stage's micro-batch ({seqs} sequences per step)")
        stages.append(dict(name="patch", K=K, steps=patch_steps, seqs=seqs, micro=micro, share=(0, patch_steps)))
    if total > patch_steps:
        stages.append(dict(name="token", K=1, steps=total - patch_steps, seqs=tokens_per_step,
                           micro=train["batch"], share=(patch_steps, total)))
    return stages


def next_step(ck, data_dir):
    """The stage, the step and the windows [S, K*(T+1)] of the training step after checkpoint ck."""
    stages = stage_plan(ck.train)
    if ck.state["stageIndex"] >= len(stages):
        raise Refusal(f"{ck.path}: the run ended at this checkpoint")
    stage = stages[ck.state["stageIndex"]]
    K, T = stage["K"], ck.train["model"]["contextLength"]
    tokens = read_shard(data_dir / "train.bin")
    begin, end = (len(tokens) * s // ck.train["steps"] for s in stage["share"])
    tokens = tokens[begin:end]  # single pass: each stage reads its share of the tokens
    n = window_count(len(tokens), K, T)
    # a stage's sampler is seeded with --seed + the stage's index; its saved state records the seed
    sampler = dict(seed=ck.train["seed"] + ck.state["stageIndex"], epoch=0, position=0, windowsPerEpoch=n)
    sampler.update(json.loads(ck.state.get("samplerState", "{}")))
    if sampler["windowsPerEpoch"] != n:
        raise Refusal(f"{ck.path}: the sampler saw {sampler['windowsPerEpoch']} windows, this data gives {n} "
                         f"(is --data the run's dataset?)")
    epoch, position, picked = sampler["epoch"], sampler["position"], []
    while len(picked) < stage["seqs"]:  # a batch running past an epoch's end continues into the next
        order = shuffled_order(n, sampler["seed"], epoch)
        picked += order[position:position + stage["seqs"] - len(picked)]
        epoch, position = epoch + 1, 0
    step = dict(stage=stage["name"], K=K, step=ck.state["stepInStage"] + 1, global_step=ck.state["globalStep"] + 1)
    return step, windows_at(tokens, K, T, picked)


def lr_at(step, steps, warmup, peak, min_ratio):
    """Learning rate of a stage's step (1-based): linear warmup to the peak over `warmup` steps, then cosine
    from the peak (at step warmup + 1) to peak * min_ratio (at the stage's last step)."""
    if step <= warmup:
        return peak * step / warmup
    progress = (step - warmup - 1) / max(1, steps - warmup - 1)
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


# ---------------------------------------------------------------------------------------------- report

def compare(label, patchcore, numpy_value, ok, detail, names=("patchcore", "numpy")):
    print(f"{label}: {names[0]} {patchcore:.11g}  {names[1]} {numpy_value:.11g}  {detail}  "
          f"{'ok' if ok else 'MISMATCH'}")
    return ok


def compare_rel(label, patchcore, numpy_value, rtol, names=("patchcore", "numpy")):
    rel = abs(patchcore - numpy_value) / abs(numpy_value)
    return compare(label, patchcore, numpy_value, rel <= rtol, f"rel diff {rel:.1e} (tol {rtol:.0e})", names)


# ---------------------------------------------------------------------------------------------- subcommands

def cmd_loss(args):
    ck = Checkpoint(args.checkpoint)
    step = ck.state["globalStep"]
    rec = ck.logged("val", step)
    if rec is None:
        raise Refusal(f"{ck.run / 'metrics.jsonl'} has no validation at global step {step}")
    stages = {s["name"]: s for s in stage_plan(ck.train)}
    T, batches = ck.train["model"]["contextLength"], ck.train["evalBatches"]
    tokens = read_shard(args.data / "val.bin")
    ok = True
    # the patch loss on the patch stage's validation windows; the token loss (also logged in the patch
    # stage) on the token stage's blocks: --eval-batches micro-batches, fewer if the split is short
    measured = [("token_loss", 1, ck.train["batch"])]
    if "patch_loss" in rec:
        measured.insert(0, ("patch_loss", stages["patch"]["K"], stages["patch"]["micro"]))
    for key, K, micro in measured:
        count = min(batches, window_count(len(tokens), K, T) // micro) * micro
        value = mean_loss(ck.weights, ck.config, windows_at(tokens, K, T, range(count)), K)
        ok &= compare_rel(f"{rec['stage']} stage, global step {step}, {key} (K={K}, {count} windows)",
                          rec[key], value, LOSS_RTOL)
    return ok


def cmd_evalsplit(args):
    ck = Checkpoint(args.checkpoint)
    K, T = args.K, ck.config["max_position_embeddings"]
    tokens = read_shard(args.data / f"{args.split}.bin")
    blocks = window_count(len(tokens), K, T)
    if args.max_blocks is not None:
        blocks = min(blocks, args.max_blocks)
    total = mean_loss(ck.weights, ck.config, windows_at(tokens, K, T, range(blocks)), K) * blocks * T
    scored = blocks * T
    tail = tokens[blocks * T:]
    if K == 1 and args.max_blocks is None and len(tail) > 1:  # the rest as one shorter block
        total += patch_loss(ck.weights, ck.config, tail[None, :], 1) * (len(tail) - 1)
        scored += len(tail) - 1
    value = total / scored
    what = f"{args.split} split, K={K}: {blocks} blocks of {K * T} tokens" + \
           (f" + a tail of {len(tail) - 1} tokens" if scored > blocks * T else "")
    if args.expect is None:
        print(f"{what}: numpy {value:.10f}")
        return True
    diff = abs(args.expect - value)
    return compare(what, args.expect, value, diff <= EVAL_ATOL, f"abs diff {diff:.1e} (tol {EVAL_ATOL:.1e})",
                   ("patchcore eval", "numpy"))


def cmd_lr(args):
    ck = Checkpoint(args.run)
    train = ck.train
    with open(ck.run / "metrics.jsonl") as f:
        records = [r for r in map(json.loads, f) if r["type"] == "train"]
    ok, checked = True, 0
    for stage in stage_plan(train):
        logged = [r for r in records if r["stage"] == stage["name"]]
        if not logged:
            continue
        checked += 1
        # docs/training.md: --warmup, default min(2000, max(1, S/10)), at most the stage's S steps
        warmup = min(train["warmup"] if train["warmup"] >= 0 else min(2000, max(1, stage["steps"] // 10)), stage["steps"])
        worst = max(abs(r["lr"] - lr_at(r["step"], stage["steps"], warmup, train["lr"], train["minLrRatio"]))
                    / r["lr"] for r in logged)
        good = worst <= LR_RTOL
        ok &= good
        print(f"{stage['name']} stage: {stage['steps']} steps, warmup {warmup}: {len(logged)} logged lrs, "
              f"max rel diff {worst:.1e} (tol {LR_RTOL:.0e})  {'ok' if good else 'MISMATCH'}")
    if checked == 0:
        raise Refusal(f"{ck.run / 'metrics.jsonl'} logs no training step of this run's stages")
    return ok


def consecutive(path_a, path_b):
    a, b = Checkpoint(path_a), Checkpoint(path_b)
    if b.optimizer_step != a.optimizer_step + 1 or b.state["stageIndex"] != a.state["stageIndex"]:
        raise Refusal(f"{a.path} and {b.path} are not one optimizer step apart in the same stage")
    moments_b = b.moments()
    if not moments_b:
        raise Refusal(f"{b.path} holds no optimizer state (a stage end): take an earlier pair")
    return a, b, a.moments(), moments_b


def applied_gradient(moments_a, moments_b, beta1):
    """The (clipped) gradient of the step, from the first moments: m_b = beta1 m_a + (1 - beta1) g."""
    return {name: (m_b - beta1 * moments_a.get(name, (0.0, 0.0))[0]) / (1 - beta1)
            for name, (m_b, _) in moments_b.items()}


def cmd_adamw(args):
    a, b, mom_a, mom_b = consecutive(args.checkpoint_a, args.checkpoint_b)
    tr = b.train
    beta1, beta2, eps, wd = tr["beta1"], tr["beta2"], tr["eps"], tr["weightDecay"]
    lr = args.lr if args.lr is not None else b.logged_or_refuse("train", b.state["globalStep"])["lr"]
    t = b.optimizer_step
    g = applied_gradient(mom_a, mom_b, beta1)
    print(f"optimizer step {t}, lr {lr:.8e}, beta ({beta1}, {beta2}), eps {eps}, weight decay {wd} "
          f"(not on RMSNorm gains)")
    worst_ulps = worst_v = max_step = 0.0
    for name, w_a in a.weights.items():
        m_b, v_b = mom_b[name]
        v_a = mom_a.get(name, (0.0, 0.0))[1]
        decay = 0.0 if name.endswith("norm.weight") else wd
        m_hat, v_hat = m_b / (1 - beta1 ** t), v_b / (1 - beta2 ** t)
        update = lr * m_hat / (np.sqrt(v_hat) + eps)
        predicted = w_a * (1 - lr * decay) - update
        w_b = b.weights[name]
        # patchcore works in float32, whose rounding error scales with the largest operand
        largest = np.maximum.reduce([np.abs(w_a), np.abs(w_b), np.abs(update)])
        ulp = np.spacing(largest.astype(np.float32)).astype(np.float64)
        ulps = (np.abs(predicted - w_b) / ulp).max()
        # the second moment must follow from the same gradient
        v_err = np.abs(beta2 * v_a + (1 - beta2) * g[name] ** 2 - v_b).max() / np.abs(v_b).max()
        worst_ulps, worst_v = max(worst_ulps, ulps), max(worst_v, v_err)
        max_step = max(max_step, np.abs(w_b - w_a).max())
        if args.verbose:
            print(f"  {name:48s} max|W_b - W_a| {np.abs(w_b - w_a).max():.3e}  "
                  f"max|predicted - W_b| {ulps:.2f} ulp  v rel err {v_err:.1e}")
    ok = worst_ulps <= ADAMW_ULPS and worst_v <= MOMENT_RTOL
    print(f"{len(a.weights)} tensors: updated weights within {worst_ulps:.2f} float32 ulps of the AdamW "
          f"prediction (tol {ADAMW_ULPS:g}; max|W_b - W_a| {max_step:.2e}); second moments within "
          f"{worst_v:.1e} relative (tol {MOMENT_RTOL:.0e})  {'ok' if ok else 'MISMATCH'}")
    return ok


def cmd_gradcheck(args):
    a, b, mom_a, mom_b = consecutive(args.checkpoint_a, args.checkpoint_b)
    step, windows = next_step(a, args.data)
    K, W, cfg = step["K"], a.weights, a.config
    rec = b.logged_or_refuse("train", step["global_step"])
    clip = a.train["clip"]
    g = applied_gradient(mom_a, mom_b, a.train["beta1"])
    norm = math.sqrt(sum((x * x).sum() for x in g.values()))
    ok = compare_rel(f"{step['stage']} step {step['step']}: norm of the applied gradient (logged grad_norm "
                     f"{rec['grad_norm']:.6f}, clip {clip})", min(rec["grad_norm"], clip), norm, CLIP_RTOL,
                     ("min(grad_norm, clip)", "from the moments"))
    scale = min(1.0, clip / rec["grad_norm"])  # undo the clipping: the loss's own gradient is g / scale
    print(f"loss of the step's {len(windows)} windows before it: {patch_loss(W, cfg, windows, K):.10f}")
    rng = np.random.default_rng(0)
    directions = [("gradient", g)] + [(f"random {i}", {n: rng.standard_normal(w.shape) for n, w in W.items()})
                                      for i in range(args.directions)]
    for label, u in directions:
        norm_u = math.sqrt(sum((x * x).sum() for x in u.values()))
        u = {n: x / norm_u for n, x in u.items()}
        plus = patch_loss({n: W[n] + args.eps * u[n] for n in W}, cfg, windows, K)
        minus = patch_loss({n: W[n] - args.eps * u[n] for n in W}, cfg, windows, K)
        finite = (plus - minus) / (2 * args.eps)
        analytic = sum((g[n] * u[n]).sum() for n in W) / scale
        ok &= compare_rel(f"  direction {label:8s}: grad . u", analytic, finite, GRAD_RTOL,
                          ("patchcore", "numpy finite difference"))
    return ok


def cmd_trainloss(args):
    ck = Checkpoint(args.checkpoint)
    step, windows = next_step(ck, args.data)
    rec = ck.logged("train", step["global_step"])
    if rec is None:
        raise Refusal(f"{ck.run / 'metrics.jsonl'} has no training step {step['global_step']}")
    value = patch_loss(ck.weights, ck.config, windows, step["K"])
    return compare_rel(f"{step['stage']} step {step['step']} (global {step['global_step']}, K={step['K']}, "
                       f"{len(windows)} windows)", rec["loss"], value, LOSS_RTOL)


# ---------------------------------------------------------------------------------------------- CLI

def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Recompute patchcore's reported numbers in float64 NumPy, independently of its Java code. "
                    "CHECKPOINT is a checkpoint folder or a run folder (its latest checkpoint).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")
    with_data = argparse.ArgumentParser(add_help=False)
    with_data.add_argument("--data", type=Path, default=default_data_dir(),
                           help="prepared dataset folder (train.bin, val.bin) the run trained on "
                                "(default: the bundled corpus, %(default)s)")

    p = sub.add_parser("loss", parents=[with_data], help="validation losses logged in metrics.jsonl",
                       description="Recompute the validation losses logged at a checkpoint's global step: in the "
                                   "patch stage the patch loss (Eq. 3 on the patch stage's validation windows of "
                                   "K(T+1) tokens) and the token loss of the same weights at K = 1; in the token "
                                   "stage the token loss. Compared with metrics.jsonl's \"val\" record (patch_loss, "
                                   "token_loss), printed by train as 'patch val N/M | patch loss ... | token loss ...'.")
    p.add_argument("checkpoint", metavar="CHECKPOINT")
    p.set_defaults(handler=cmd_loss)

    p = sub.add_parser("evalsplit", parents=[with_data], help="the loss `patchcore eval` prints",
                       description="Loss of a checkpoint on a whole split in non-overlapping blocks of the context "
                                   "T: at K = 1 every token after the first scored once (the tail after the last "
                                   "whole block as one shorter block), the mean over scored tokens; with -K, the "
                                   "patch loss over whole blocks of K*T tokens. Compare with the loss "
                                   "`patchcore eval CHECKPOINT [-K N] [--max-blocks N]` prints (4 decimals): give "
                                   "it as --expect.")
    p.add_argument("checkpoint", metavar="CHECKPOINT")
    p.add_argument("-K", type=int, default=1, help="patch size (default: 1, the token loss)")
    p.add_argument("--split", choices=("val", "train"), default="val", help="(default: val)")
    p.add_argument("--max-blocks", type=int, help="score only the first N whole blocks, as eval's --max-blocks")
    p.add_argument("--expect", type=float, help="the loss patchcore eval printed, to compare with")
    p.set_defaults(handler=cmd_evalsplit)

    p = sub.add_parser("lr", help="every learning rate logged in metrics.jsonl",
                       description="Compare every 'lr' of metrics.jsonl's \"train\" records with linear warmup "
                                   "(min(2000, steps/10) steps unless --warmup was given) then cosine decay to "
                                   "lr x min-lr-ratio, restarted for each stage; the settings from the run's "
                                   "trainer.json.")
    p.add_argument("run", metavar="RUN", help="run folder (or one of its checkpoints)")
    p.set_defaults(handler=cmd_lr)

    p = sub.add_parser("adamw", help="one AdamW update between two consecutive checkpoints",
                       description="From two checkpoints one optimizer step apart in the same stage (train "
                                   "--save-every 1), predict the second's weights from the first's weights and the "
                                   "second's moments with AdamW (bias correction, decoupled weight decay except on "
                                   "RMSNorm gains) and compare them with the second's weights; also check that the "
                                   "second moments follow from the gradient the first moments imply. The lr is the "
                                   "one metrics.jsonl logged for the step.")
    p.add_argument("checkpoint_a", metavar="CHECKPOINT_A", help="checkpoint before the step")
    p.add_argument("checkpoint_b", metavar="CHECKPOINT_B", help="checkpoint after the step")
    p.add_argument("--lr", type=float, help="learning rate of the step (default: the logged one)")
    p.add_argument("-v", "--verbose", action="store_true", help="one line per tensor")
    p.set_defaults(handler=cmd_adamw)

    p = sub.add_parser("gradcheck", parents=[with_data], help="the applied gradient against finite differences",
                       description="Recover the clipped gradient patchcore applied between two consecutive "
                                   "checkpoints (g = (m_b - beta1 m_a) / (1 - beta1)); check its norm against "
                                   "min(grad_norm logged for the step, the run's --clip); then, on the very "
                                   "windows the step read, compare its directional derivatives (unclipped) with "
                                   "central finite differences of this tool's loss, along g itself and random "
                                   "directions.")
    p.add_argument("checkpoint_a", metavar="CHECKPOINT_A", help="checkpoint before the step")
    p.add_argument("checkpoint_b", metavar="CHECKPOINT_B", help="checkpoint after the step")
    p.add_argument("--eps", type=float, default=1e-5, help="finite-difference step along a unit direction "
                                                          "(default: %(default)s)")
    p.add_argument("--directions", type=int, default=3, help="random directions (default: %(default)s)")
    p.set_defaults(handler=cmd_gradcheck)

    p = sub.add_parser("trainloss", parents=[with_data],
                       help="the logged training loss of the step after a checkpoint",
                       description="Find the windows the step after CHECKPOINT read (its stage's share of the "
                                   "training tokens, the shuffled window order, the sampler position in "
                                   "trainer.json), compute their loss with the checkpoint's weights, and compare "
                                   "it with the 'loss' metrics.jsonl logged for that step.")
    p.add_argument("checkpoint", metavar="CHECKPOINT")
    p.set_defaults(handler=cmd_trainloss)

    args = parser.parse_args(argv)
    try:
        return 0 if args.handler(args) else 1
    except Refusal as e:
        print(f"error: {e}", file=sys.stderr)
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:  # unreadable or unexpected files
        print(f"error: cannot check this ({type(e).__name__}: {e})", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
