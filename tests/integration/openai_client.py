#!/usr/bin/env python3
"""The official `openai` client against a live `strait run` (driven by
test_openai.sh): chat and completions, streaming with usage, stop strings,
max_tokens, logprobs, 16 concurrent streams. Prints one line per failed check
and exits 1 if any failed.

    openai_client.py BASE_URL API_KEY STRAIT_BINARY
"""
import subprocess
import sys
import threading

from openai import OpenAI

base, key, strait = sys.argv[1], sys.argv[2], sys.argv[3]
client = OpenAI(base_url=base + "/v1", api_key=key, max_retries=0, timeout=120)
fails = []
checks = 0


def check(cond, what):
    global checks
    checks += 1
    if not cond:
        fails.append(what)
        print("FAIL", what, flush=True)


MSG = [{"role": "user", "content": "Tell me a long story about a lighthouse keeper and the sea."}]
greedy = dict(model="m", temperature=0)

# ---- non-streaming chat -------------------------------------------------------
r = client.chat.completions.create(messages=MSG, max_tokens=24, **greedy)
c = r.choices[0]
ref_text = c.message.content
check(r.object == "chat.completion" and r.id, f"chat object/id: {r.object!r} {r.id!r}")
check(len(r.choices) == 1 and c.index == 0, "one choice with index 0")
check(c.message.role == "assistant", f"role {c.message.role!r}")
check(isinstance(ref_text, str) and ref_text, "non-empty content")
check(c.finish_reason in ("stop", "length"), f"finish_reason {c.finish_reason!r}")
u = r.usage
check(u.prompt_tokens > 0 and 1 <= u.completion_tokens <= 24, f"usage {u}")
check(u.total_tokens == u.prompt_tokens + u.completion_tokens, f"usage total {u}")
if c.finish_reason == "length":
    check(u.completion_tokens == 24, f"finish length but {u.completion_tokens} tokens")

# ---- streaming chat with usage ------------------------------------------------
chunks = list(client.chat.completions.create(messages=MSG, max_tokens=24, stream=True,
                                             stream_options={"include_usage": True}, **greedy))
content = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
usage_chunks = [ch for ch in chunks if ch.usage is not None]
check(all(ch.object == "chat.completion.chunk" for ch in chunks), "chunk objects")
check(len({ch.id for ch in chunks}) == 1, "one id across the stream's chunks")
check(content == ref_text, f"streamed text equals the non-streamed greedy text: {content!r} vs {ref_text!r}")
check(finishes == [c.finish_reason], f"exactly one finish_reason {finishes} == [{c.finish_reason!r}]")
check(len(usage_chunks) == 1 and usage_chunks[0] is chunks[-1] and not chunks[-1].choices,
      "usage comes once, in a last chunk with no choices")
if usage_chunks:
    su = usage_chunks[0].usage
    check((su.prompt_tokens, su.completion_tokens, su.total_tokens) ==
          (u.prompt_tokens, u.completion_tokens, u.total_tokens), f"stream usage {su} == non-stream {u}")

# ---- stop strings: cut before the first occurrence, never streamed ---------------
long_ref = client.chat.completions.create(messages=MSG, max_tokens=40, **greedy).choices[0].message.content
# a stop string from the middle of the greedy text: the output must end just before it
mid = len(long_ref) // 2
stop = long_ref[mid:mid + 3] if len(long_ref) >= 8 else None
check(stop is not None and stop.strip(), f"greedy text long enough for a stop test: {long_ref!r}")
if stop and stop.strip():
    want = long_ref[:long_ref.find(stop)]
    s = client.chat.completions.create(messages=MSG, max_tokens=40, stop=[stop, "\u2603never"], **greedy)
    sc = s.choices[0]
    check(sc.message.content == want, f"stop {stop!r}: got {sc.message.content!r}, want {want!r}")
    check(stop not in (sc.message.content or ""), "stop string absent")
    check(sc.finish_reason == "stop", f"stop finish_reason {sc.finish_reason!r}")
    st = "".join(ch.choices[0].delta.content or "" for ch in client.chat.completions.create(
        messages=MSG, max_tokens=40, stop=stop, stream=True, **greedy) if ch.choices)
    check(st == want, f"streamed stop {stop!r}: got {st!r}, want {want!r}")

# ---- max_tokens -----------------------------------------------------------------
for mt, field in ((5, "max_tokens"), (7, "max_completion_tokens")):
    r = client.chat.completions.create(messages=MSG, extra_body={"ignore_eos": True}, **{field: mt}, **greedy)
    check(r.choices[0].finish_reason == "length", f"{field}={mt}: finish {r.choices[0].finish_reason!r}")
    check(r.usage.completion_tokens == mt, f"{field}={mt}: {r.usage.completion_tokens} tokens")

# ---- logprobs ----------------------------------------------------------------------
r = client.chat.completions.create(messages=MSG, max_tokens=6, logprobs=True, top_logprobs=3, **greedy)
lp = r.choices[0].logprobs.content if r.choices[0].logprobs else None
check(lp is not None and len(lp) == r.usage.completion_tokens, "one logprob entry per token")
for i, e in enumerate(lp or []):
    tops = e.top_logprobs
    check(e.logprob <= 0 and len(tops) == 3, f"logprob[{i}] {e.logprob} with {len(tops)} alternatives")
    check(all(tops[k].logprob >= tops[k + 1].logprob for k in range(len(tops) - 1)), f"top_logprobs[{i}] sorted")
    # greedy: the chosen token is the most likely one
    check(tops and tops[0].token == e.token and abs(tops[0].logprob - e.logprob) < 1e-4,
          f"greedy token {e.token!r} is top {tops[0].token if tops else None!r}")
    check(e.bytes == list(e.token.encode("utf-8")) or "\ufffd" in e.token, f"bytes of {e.token!r}")
if lp:
    joined = b"".join(bytes(e.bytes) for e in lp).decode("utf-8", "replace")
    check(joined == r.choices[0].message.content, f"tokens join to the content: {joined!r}")
r = client.completions.create(model="m", prompt="The capital of France is", max_tokens=4, logprobs=2, temperature=0)
cl = r.choices[0].logprobs
check(cl is not None and len(cl.tokens) == len(cl.token_logprobs) == len(cl.top_logprobs) ==
      r.usage.completion_tokens, "legacy logprobs: tokens, token_logprobs, top_logprobs per token")
check(cl is not None and all(len(t) == 2 for t in cl.top_logprobs), "legacy logprobs: 2 alternatives each")
check(cl is not None and "".join(cl.tokens) == r.choices[0].text, "legacy logprobs tokens join to the text")

# ---- /v1/completions: string and token array give the same greedy text ----------
text = "Once upon a time, in a small village,"
ids = [int(t) for t in subprocess.run([strait, "tokenize"], input=text.encode(), capture_output=True,
                                      check=True).stdout.split()]
a = client.completions.create(model="m", prompt=text, max_tokens=12, temperature=0)
b = client.completions.create(model="m", prompt=ids, max_tokens=12, temperature=0)
check(a.object == "text_completion" and a.choices[0].text, f"completion text {a.choices[0].text!r}")
check(b.usage.prompt_tokens >= len(ids) and b.usage.prompt_tokens <= len(ids) + 1,
      f"token-array prompt: {b.usage.prompt_tokens} prompt tokens for {len(ids)} ids")
check(a.usage.prompt_tokens == b.usage.prompt_tokens, "string and ids prompts count the same tokens")
check(a.choices[0].text == b.choices[0].text, f"string vs ids: {a.choices[0].text!r} vs {b.choices[0].text!r}")
sc = list(client.completions.create(model="m", prompt=text, max_tokens=12, temperature=0, stream=True,
                                    stream_options={"include_usage": True}))
check("".join(x.choices[0].text for x in sc if x.choices) == a.choices[0].text, "streamed completion text")
check(sc[-1].usage is not None and sc[-1].usage.completion_tokens == a.usage.completion_tokens,
      "streamed completion usage")

# ---- 16 concurrent streams ----------------------------------------------------------
N = 16
results = [None] * N


def stream(i):
    try:
        got, fin, usage = "", None, None
        for ch in client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": f"Count from {i} to {i + 20}."}],
                max_tokens=16, temperature=0.7, seed=i, stream=True, stream_options={"include_usage": True}):
            if ch.choices:
                got += ch.choices[0].delta.content or ""
                fin = ch.choices[0].finish_reason or fin
            if ch.usage:
                usage = ch.usage
        results[i] = (got, fin, usage)
    except Exception as e:  # reported below as a failed stream
        results[i] = e


threads = [threading.Thread(target=stream, args=(i,)) for i in range(N)]
for t in threads:
    t.start()
for t in threads:
    t.join(120)
for i, res in enumerate(results):
    ok = isinstance(res, tuple) and res[0] and res[1] in ("stop", "length") and res[2] is not None \
        and 1 <= res[2].completion_tokens <= 16
    check(ok, f"concurrent stream {i}: {res!r}")

print(f"openai client: {checks - len(fails)}/{checks} checks passed", flush=True)
sys.exit(1 if fails else 0)
