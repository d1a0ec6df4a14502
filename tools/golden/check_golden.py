#!/usr/bin/env python3
"""Measure how far exact math is from a golden file: the tolerance an engine test needs.

Dequantizes a llama / qwen2 / qwen3 GGUF to float64 (undoing the converter's Q/K permutation
for llama), runs hf_reference.forward_weights on the golden file's prompt + greedy[:-1], and
prints, over every row, the largest difference from llama.cpp's golden numbers in
  * logits of the golden top-k ids,
  * log-probabilities (logit - lse) of those ids,
  * lse,
and the number of rows whose argmax differs.  For an F32 GGUF the differences are float
rounding; for a quantized one they also show llama.cpp's own approximations (it quantizes
activations to 8 bits for quantized matmuls), which an engine computing in float will not share.

Usage: check_golden.py MODEL.gguf GOLDEN.txt [GOLDEN.txt ...]
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_reference  # noqa: E402


def parse_golden(path):
    """-> dict(prompt=[ids], greedy=[ids], k=int, n_vocab=int, rows=[(lse, [(id, logit)])])."""
    g = {"rows": []}
    with open(path) as f:
        lines = [ln.rstrip("\n") for ln in f]
    if lines[0] != "strait-golden 1":
        raise ValueError(f"{path}: not a strait-golden 1 file")
    n_rows = None
    for ln in lines[1:]:
        if not ln or ln.startswith("#"):
            continue
        parts = ln.split()
        if parts[0] in ("prompt", "greedy"):
            ids = [int(t) for t in parts[2:]]
            if len(ids) != int(parts[1]):
                raise ValueError(f"{path}: {parts[0]} count mismatch")
            g[parts[0]] = ids
        elif parts[0] in ("k", "n_vocab"):
            g[parts[0]] = int(parts[1])
        elif parts[0] == "rows":
            n_rows = int(parts[1])
        elif parts[0] == "model":
            g["model"] = parts[1]
        else:
            if int(parts[0]) != len(g["rows"]):
                raise ValueError(f"{path}: row {parts[0]} out of order")
            pairs = [(int(a), float(b)) for a, b in (p.split(":") for p in parts[2:])]
            g["rows"].append((float(parts[1]), pairs))
    if n_rows != len(g["rows"]) or n_rows != len(g["prompt"]) + len(g["greedy"]) - 1:
        raise ValueError(f"{path}: row count mismatch")
    return g


def gguf_to_hf(path):
    """-> (HF-style config dict, {HF name: float64 ndarray in HF layout})."""
    import gguf
    r = gguf.GGUFReader(path)

    def kv(key, default=None):
        f = r.fields.get(key)
        return default if f is None else f.contents()

    arch = kv("general.architecture")
    d = kv(f"{arch}.embedding_length")
    nh = kv(f"{arch}.attention.head_count")
    nkv = kv(f"{arch}.attention.head_count_kv", nh)
    cfg = {
        "model_type": arch, "hidden_size": d, "num_attention_heads": nh,
        "num_key_value_heads": nkv, "num_hidden_layers": kv(f"{arch}.block_count"),
        "rms_norm_eps": kv(f"{arch}.attention.layer_norm_rms_epsilon"),
        "rope_theta": kv(f"{arch}.rope.freq_base", 10000.0),
        "head_dim": kv(f"{arch}.attention.key_length", d // nh),
    }
    W = {}
    names = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head",
             "attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj",
             "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
             "attn_output": "self_attn.o_proj", "attn_q_norm": "self_attn.q_norm",
             "attn_k_norm": "self_attn.k_norm", "ffn_norm": "post_attention_layernorm",
             "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
    for t in r.tensors:
        parts = t.name.split(".")
        if parts[0] == "rope_freqs":
            raise SystemExit("llama3 rope_freqs: compare tiny models with gen_golden.py --hf-dir")
        a = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64)
        a = a.reshape([int(x) for x in reversed(t.shape)])
        if parts[0] == "blk":
            base, suffix = names[parts[2]], parts[3]
            if arch == "llama" and parts[2] in ("attn_q", "attn_k"):
                n = nh if parts[2] == "attn_q" else nkv
                a = (a.reshape(n, a.shape[0] // n // 2, 2, *a.shape[1:])
                     .swapaxes(1, 2).reshape(a.shape))
            W[f"model.layers.{parts[1]}.{base}.{suffix}"] = a
        else:
            W[f"{names[parts[0]]}.{parts[1]}"] = a
    cfg["tie_word_embeddings"] = "lm_head.weight" not in W
    return cfg, W


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    cfg, W = gguf_to_hf(sys.argv[1])
    for path in sys.argv[2:]:
        g = parse_golden(path)
        seq = g["prompt"] + g["greedy"][:-1]
        ref = hf_reference.forward_weights(cfg, W, seq)
        d_logit = d_lp = d_lse = 0.0
        argmax_diff = 0
        sum_lp = 0.0
        for i, (lse, pairs) in enumerate(g["rows"]):
            rl = hf_reference.logsumexp(ref[i])
            d_lse = max(d_lse, abs(rl - lse))
            for tid, logit in pairs:
                d_logit = max(d_logit, abs(ref[i][tid] - logit))
                d_lp = max(d_lp, abs((ref[i][tid] - rl) - (logit - lse)))
                sum_lp += abs((ref[i][tid] - rl) - (logit - lse))
            argmax_diff += int(np.argmax(ref[i]) != pairs[0][0])
        print(f"{os.path.basename(path)}: rows {len(g['rows'])}  max|dlogit| {d_logit:.4f}"
              f"  max|dlogprob| {d_lp:.4f} (mean {sum_lp / (len(g['rows']) * g['k']):.4f})"
              f"  max|dlse| {d_lse:.4f}  argmax differs in {argmax_diff}")


if __name__ == "__main__":
    main()
