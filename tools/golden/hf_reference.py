#!/usr/bin/env python3
"""Plain NumPy forward pass of llama / qwen2 / qwen3 with Hugging Face semantics.

Reads a Hugging Face directory (config.json + model.safetensors, BF16/F16/F32) and returns
the logits of every position of a token sequence, computed in float64.  It exists to check,
independently of llama.cpp, that the tiny models written by make_tiny_models.py mean the same
thing in both files: the safetensors in HF layout (rotate-half RoPE) and the GGUF that llama.cpp
runs (Q/K rows permuted for llama).  It is slow and meant for models of a few MB only.

Usage as a tool:  hf_reference.py DIR ID [ID ...]   -> prints the argmax of each position.
"""
import json
import struct
import sys

import numpy as np

# ---------------------------------------------------------------- safetensors (read)


def read_safetensors(path):
    """Return {name: float64 ndarray} for every tensor of a .safetensors file."""
    with open(path, "rb") as f:
        blob = f.read()
    (hlen,) = struct.unpack_from("<Q", blob, 0)
    header = json.loads(blob[8:8 + hlen])
    base = 8 + hlen
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        raw = blob[base + b: base + e]
        dt = info["dtype"]
        if dt == "BF16":
            u = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            arr = u.view(np.float32)
        elif dt == "F16":
            arr = np.frombuffer(raw, dtype="<f2")
        elif dt == "F32":
            arr = np.frombuffer(raw, dtype="<f4")
        else:
            raise ValueError(f"{path}: tensor {name}: unsupported dtype {dt}")
        out[name] = arr.astype(np.float64).reshape(info["shape"])
    return out

# ---------------------------------------------------------------- model pieces


def rms_norm(x, w, eps):
    """x (..., d), w (d,) -> x / rms(x) * w, over the last axis."""
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def inv_freqs(cfg, head_dim):
    """RoPE inverse frequencies (head_dim/2,), with llama3 scaling when configured."""
    theta = cfg.get("rope_theta", 10000.0)
    inv = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    rs = cfg.get("rope_scaling") or {}
    if rs.get("rope_type", rs.get("type")) == "llama3":
        factor = rs["factor"]
        lo, hi = rs["low_freq_factor"], rs["high_freq_factor"]
        old = rs["original_max_position_embeddings"]
        wavelen = 2 * np.pi / inv
        smooth = (old / wavelen - lo) / (hi - lo)
        scaled = np.where(wavelen > old / lo, inv / factor, inv)
        mid = (wavelen >= old / hi) & (wavelen <= old / lo)
        scaled = np.where(mid, (1 - smooth) * inv / factor + smooth * inv, scaled)
        inv = scaled
    return inv


def rope_rotate_half(x, pos, inv):
    """x (T, H, D) in HF layout: pairs are (i, i + D/2).  pos (T,)."""
    ang = pos[:, None] * inv[None, :]              # (T, D/2)
    cos = np.cos(ang)[:, None, :]
    sin = np.sin(ang)[:, None, :]
    half = x.shape[-1] // 2
    a, b = x[..., :half], x[..., half:]
    return np.concatenate([a * cos - b * sin, b * cos + a * sin], axis=-1)


def forward(model_dir, ids):
    """Logits (T, vocab) float64 for token ids `ids` at positions 0..T-1."""
    with open(f"{model_dir}/config.json") as f:
        cfg = json.load(f)
    return forward_weights(cfg, read_safetensors(f"{model_dir}/model.safetensors"), ids)


def forward_weights(cfg, W, ids):
    """Same, from an HF config dict and {HF tensor name: ndarray} in HF layout."""
    mt = cfg["model_type"]
    d = cfg["hidden_size"]
    nh = cfg["num_attention_heads"]
    nkv = cfg.get("num_key_value_heads", nh)
    hd = cfg.get("head_dim") or d // nh
    eps = cfg["rms_norm_eps"]
    inv = inv_freqs(cfg, hd)
    T = len(ids)
    pos = np.arange(T, dtype=np.float64)
    mask = np.triu(np.full((T, T), -np.inf), 1)

    x = W["model.embed_tokens.weight"][np.asarray(ids)]
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        h = rms_norm(x, W[p + "input_layernorm.weight"], eps)
        q = h @ W[p + "self_attn.q_proj.weight"].T
        k = h @ W[p + "self_attn.k_proj.weight"].T
        v = h @ W[p + "self_attn.v_proj.weight"].T
        if p + "self_attn.q_proj.bias" in W:
            q += W[p + "self_attn.q_proj.bias"]
            k += W[p + "self_attn.k_proj.bias"]
            v += W[p + "self_attn.v_proj.bias"]
        q = q.reshape(T, nh, hd)
        k = k.reshape(T, nkv, hd)
        v = v.reshape(T, nkv, hd)
        if mt == "qwen3":
            q = rms_norm(q, W[p + "self_attn.q_norm.weight"], eps)
            k = rms_norm(k, W[p + "self_attn.k_norm.weight"], eps)
        q = rope_rotate_half(q, pos, inv)
        k = rope_rotate_half(k, pos, inv)
        group = nh // nkv
        att = np.empty((T, nh, hd))
        for hh in range(nh):
            kv = hh // group
            s = q[:, hh, :] @ k[:, kv, :].T / np.sqrt(hd) + mask
            s = np.exp(s - s.max(axis=-1, keepdims=True))
            s /= s.sum(axis=-1, keepdims=True)
            att[:, hh, :] = s @ v[:, kv, :]
        x = x + att.reshape(T, nh * hd) @ W[p + "self_attn.o_proj.weight"].T
        h = rms_norm(x, W[p + "post_attention_layernorm.weight"], eps)
        g = h @ W[p + "mlp.gate_proj.weight"].T
        u = h @ W[p + "mlp.up_proj.weight"].T
        x = x + (g / (1 + np.exp(-g)) * u) @ W[p + "mlp.down_proj.weight"].T
    x = rms_norm(x, W["model.norm.weight"], eps)
    head = W.get("lm_head.weight")
    if head is None or cfg.get("tie_word_embeddings"):
        head = W["model.embed_tokens.weight"]
    return x @ head.T


def logsumexp(row):
    m = np.max(row)
    return m + np.log(np.sum(np.exp(row - m)))


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: hf_reference.py MODEL_DIR ID [ID ...]")
    logits = forward(sys.argv[1], [int(t) for t in sys.argv[2:]])
    print(" ".join(str(int(i)) for i in logits.argmax(axis=-1)))
