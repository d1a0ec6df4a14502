#!/usr/bin/env python3
"""Write tiny random-weight llama / qwen2 / qwen3 models for the engine's correctness tests.

For each model it writes
  * a Hugging Face directory  <tests/golden>/<name>/{config.json, model.safetensors}  (BF16,
    HF layout: Q/K rows in the rotate-half order that HF checkpoints use), committed;
  * the same weights as an F32 GGUF  <gguf_dir>/<name>.gguf  (not committed) laid out the way
    llama.cpp's convert_hf_to_gguf.py lays them out: Q/K rows permuted into the interleaved RoPE
    order for llama only (qwen2/qwen3 use NeoX RoPE and keep HF order), a rope_freqs tensor for
    llama3 rope scaling, and a fake 512-token gpt2 vocabulary so that llama.cpp loads the file.

Every weight is rounded to BF16 first, so the GGUF (F32) holds exactly the values of the
safetensors file: golden logits computed by llama.cpp on the GGUF are golden for both loaders.
Deterministic: same seed -> same bytes.

Usage: make_tiny_models.py [--out tests/golden] [--gguf-dir /tmp/strait-golden]
"""
import argparse
import json
import math
import os
import struct

import numpy as np

VOCAB = 512

# name -> HF config.json (all that a loader needs; nothing else)
MODELS = {
    # Qwen3: explicit head_dim (q dim 4*32 = 128 != hidden 64), per-head q/k RMSNorm, tied head.
    "qwen3-tiny": {
        "architectures": ["Qwen3ForCausalLM"],
        "model_type": "qwen3",
        "vocab_size": VOCAB,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 32,
        "hidden_act": "silu",
        "max_position_embeddings": 512,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "tie_word_embeddings": True,
        "attention_bias": False,
        "bos_token_id": 510,
        "eos_token_id": 511,
        "torch_dtype": "bfloat16",
    },
    # Llama 3 style: llama3 rope scaling (all three frequency bands are hit with head_dim 16
    # and theta 5e5), separate lm_head.
    "llama-tiny": {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": VOCAB,
        "hidden_size": 64,
        "intermediate_size": 160,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "hidden_act": "silu",
        "max_position_embeddings": 512,
        "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0,
        "rope_scaling": {
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
        "tie_word_embeddings": False,
        "attention_bias": False,
        "mlp_bias": False,
        "bos_token_id": 510,
        "eos_token_id": 511,
        "torch_dtype": "bfloat16",
    },
    # Qwen2: bias on q/k/v projections (not on o), tied head, head_dim = hidden / heads.
    "qwen2-tiny": {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "vocab_size": VOCAB,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "hidden_act": "silu",
        "max_position_embeddings": 512,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "tie_word_embeddings": True,
        "bos_token_id": 510,
        "eos_token_id": 511,
        "torch_dtype": "bfloat16",
    },
}

SEEDS = {"qwen3-tiny": 3, "llama-tiny": 1, "qwen2-tiny": 2}

# ---------------------------------------------------------------- BF16 helpers


def to_bf16_bits(a):
    """float32 array -> uint16 BF16 bits, round to nearest even."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


def bf16_round(a):
    """float32 array -> float32 array holding the BF16-rounded values."""
    return (to_bf16_bits(a).astype(np.uint32) << 16).view(np.float32)

# ---------------------------------------------------------------- weights


def make_weights(cfg, seed):
    """HF-named float32 tensors (BF16-representable), HF layout."""
    rng = np.random.default_rng(seed)
    d, ff = cfg["hidden_size"], cfg["intermediate_size"]
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or d // nh

    def lin(out_dim, in_dim):
        return rng.normal(0, 1 / math.sqrt(in_dim), (out_dim, in_dim))

    def norm(n):
        return 1 + 0.2 * rng.normal(0, 1, n)

    # A small embedding keeps the residual stream from being dominated by the input token
    # (with a tied head that would make every argmax the input id); o_proj and down_proj are
    # doubled so the layers' contributions dominate.
    w = {"model.embed_tokens.weight": rng.normal(0, 0.5, (cfg["vocab_size"], d))}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = norm(d)
        w[p + "self_attn.q_proj.weight"] = lin(nh * hd, d)
        w[p + "self_attn.k_proj.weight"] = lin(nkv * hd, d)
        w[p + "self_attn.v_proj.weight"] = lin(nkv * hd, d)
        if cfg["model_type"] == "qwen2":
            w[p + "self_attn.q_proj.bias"] = rng.normal(0, 0.5, nh * hd)
            w[p + "self_attn.k_proj.bias"] = rng.normal(0, 0.5, nkv * hd)
            w[p + "self_attn.v_proj.bias"] = rng.normal(0, 0.5, nkv * hd)
        if cfg["model_type"] == "qwen3":
            w[p + "self_attn.q_norm.weight"] = norm(hd)
            w[p + "self_attn.k_norm.weight"] = norm(hd)
        w[p + "self_attn.o_proj.weight"] = 2 * lin(d, nh * hd)
        w[p + "post_attention_layernorm.weight"] = norm(d)
        w[p + "mlp.gate_proj.weight"] = lin(ff, d)
        w[p + "mlp.up_proj.weight"] = lin(ff, d)
        w[p + "mlp.down_proj.weight"] = 2 * lin(d, ff)
    w["model.norm.weight"] = norm(d)
    if not cfg["tie_word_embeddings"]:
        w["lm_head.weight"] = lin(cfg["vocab_size"], d) * 4
    return {k: bf16_round(v.astype(np.float32)) for k, v in w.items()}

# ---------------------------------------------------------------- safetensors (write)


def write_safetensors(path, tensors):
    """BF16 safetensors, tensors in sorted name order, header padded to 8 bytes."""
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        raw = to_bf16_bits(tensors[name]).astype("<u2").tobytes()
        header[name] = {"dtype": "BF16", "shape": list(tensors[name].shape),
                        "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    header["__metadata__"] = {"format": "pt"}
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * (-len(hj) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for b in blobs:
            f.write(b)

# ---------------------------------------------------------------- GGUF (write)


def permute_for_interleaved_rope(w, n_head):
    """HF rotate-half row order -> llama.cpp interleaved order (what the converter does):
    per head, rows (r, r + D/2) become adjacent rows (2r, 2r + 1)."""
    rows = w.shape[0]
    return (w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def llama3_rope_factors(cfg, hd):
    """Per-frequency divisor llama.cpp applies (rope_freqs tensor), as the converter computes."""
    rs = cfg["rope_scaling"]
    factor, lo, hi = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
    old = rs["original_max_position_embeddings"]
    out = []
    for i in range(0, hd, 2):
        freq = 1.0 / cfg["rope_theta"] ** (i / hd)
        wavelen = 2 * math.pi / freq
        if wavelen < old / hi:
            out.append(1.0)
        elif wavelen > old / lo:
            out.append(factor)
        else:
            smooth = (old / wavelen - lo) / (hi - lo)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def fake_vocab():
    """512 gpt2-style byte-level tokens: 256 byte symbols, 254 two-letter merges, 2 specials."""
    # GPT-2's byte -> printable unicode map
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    byte_sym = {b: chr(c) for b, c in zip(bs, cs)}
    tokens = [byte_sym[b] for b in range(256)]
    merges = []
    letters = "abcdefghijklmnopqrstuvwxyz"
    for i in range(VOCAB - 256 - 2):
        a, b = letters[i % 26], letters[(i // 26) % 26]
        merges.append(f"{a} {b}")
        tokens.append(a + b)
    tokens += ["<|endoftext|>", "<|im_end|>"]
    types = [1] * (VOCAB - 2) + [3, 3]
    return tokens, types, merges


def write_gguf(path, name, cfg, w):
    import gguf  # only needed here

    mt = cfg["model_type"]
    arch = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3"}[mt]
    d, nh, nkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or d // nh
    wr = gguf.GGUFWriter(path, arch)
    wr.add_name(name)
    wr.add_context_length(cfg["max_position_embeddings"])
    wr.add_embedding_length(d)
    wr.add_block_count(cfg["num_hidden_layers"])
    wr.add_feed_forward_length(cfg["intermediate_size"])
    wr.add_head_count(nh)
    wr.add_head_count_kv(nkv)
    wr.add_rope_freq_base(cfg["rope_theta"])
    wr.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    wr.add_file_type(gguf.LlamaFileType.ALL_F32)
    if "head_dim" in cfg:
        wr.add_key_length(hd)
        wr.add_value_length(hd)
    if mt == "llama":
        wr.add_vocab_size(cfg["vocab_size"])
        wr.add_rope_dimension_count(hd)
    tokens, types, merges = fake_vocab()
    wr.add_tokenizer_model("gpt2")
    wr.add_tokenizer_pre("default")
    wr.add_token_list(tokens)
    wr.add_token_types(types)
    wr.add_token_merges(merges)
    wr.add_bos_token_id(cfg["bos_token_id"])
    wr.add_eos_token_id(cfg["eos_token_id"])
    wr.add_add_bos_token(False)

    def put(gname, arr):
        wr.add_tensor(gname, np.ascontiguousarray(arr, dtype=np.float32))

    put("token_embd.weight", w["model.embed_tokens.weight"])
    for i in range(cfg["num_hidden_layers"]):
        p, b = f"model.layers.{i}.", f"blk.{i}."
        q, k = w[p + "self_attn.q_proj.weight"], w[p + "self_attn.k_proj.weight"]
        if mt == "llama":
            q, k = permute_for_interleaved_rope(q, nh), permute_for_interleaved_rope(k, nkv)
        put(b + "attn_norm.weight", w[p + "input_layernorm.weight"])
        put(b + "attn_q.weight", q)
        put(b + "attn_k.weight", k)
        put(b + "attn_v.weight", w[p + "self_attn.v_proj.weight"])
        if mt == "qwen2":
            put(b + "attn_q.bias", w[p + "self_attn.q_proj.bias"])
            put(b + "attn_k.bias", w[p + "self_attn.k_proj.bias"])
            put(b + "attn_v.bias", w[p + "self_attn.v_proj.bias"])
        if mt == "qwen3":
            put(b + "attn_q_norm.weight", w[p + "self_attn.q_norm.weight"])
            put(b + "attn_k_norm.weight", w[p + "self_attn.k_norm.weight"])
        put(b + "attn_output.weight", w[p + "self_attn.o_proj.weight"])
        put(b + "ffn_norm.weight", w[p + "post_attention_layernorm.weight"])
        put(b + "ffn_gate.weight", w[p + "mlp.gate_proj.weight"])
        put(b + "ffn_up.weight", w[p + "mlp.up_proj.weight"])
        put(b + "ffn_down.weight", w[p + "mlp.down_proj.weight"])
    put("output_norm.weight", w["model.norm.weight"])
    if "lm_head.weight" in w:
        put("output.weight", w["lm_head.weight"])
    if (cfg.get("rope_scaling") or {}).get("rope_type") == "llama3":
        put("rope_freqs.weight", llama3_rope_factors(cfg, hd))
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(here, "..", "..", "tests", "golden"))
    ap.add_argument("--gguf-dir", default="/tmp/strait-golden")
    ap.add_argument("--only", nargs="*", default=list(MODELS))
    args = ap.parse_args()
    os.makedirs(args.gguf_dir, exist_ok=True)
    for name in args.only:
        cfg = MODELS[name]
        w = make_weights(cfg, SEEDS[name])
        mdir = os.path.join(args.out, name)
        os.makedirs(mdir, exist_ok=True)
        with open(os.path.join(mdir, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
            f.write("\n")
        write_safetensors(os.path.join(mdir, "model.safetensors"), w)
        write_gguf(os.path.join(args.gguf_dir, name + ".gguf"), name, cfg, w)
        n = sum(v.size for v in w.values())
        print(f"{name}: {n} parameters -> {mdir}, {args.gguf_dir}/{name}.gguf")


if __name__ == "__main__":
    main()
