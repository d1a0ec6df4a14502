#!/usr/bin/env python3
"""A fake Hugging Face hub for tests (stdlib only, 127.0.0.1, ephemeral port).

Prints the port on stdout, then serves until killed (or --max-seconds):

  GET /api/models/{org}/{name}/revision/{rev}   {"id", "sha", "siblings": [{"rfilename"}]}
  GET /{org}/{name}/resolve/{rev}/{file}        LFS files (*.gguf, *.safetensors): 302 to
                                                /cdn/{sha256} with X-Linked-Etag + X-Linked-Size,
                                                like the real hub; small files served directly
  GET /cdn/{sha256}                             the bytes, with Range support (206 / 416)

Repos (org "test"):
  tiny-GGUF         tiny.Q8_0.gguf, tiny.Q4_0.gguf, README.md; the first request for each
                    .gguf is cut off halfway (connection dropped) to exercise resume
  norange-GGUF      one .gguf, cut off on first request, and Range is ignored (200)
  bad-GGUF          one .gguf whose X-Linked-Etag names the wrong sha256
  broken-GGUF       listed file that 404s
  many-GGUF         several .gguf, none Q4_1/Q4_0/Q8_0
  tiny-safetensors  config.json, tokenizer.json, tokenizer_config.json, model.safetensors
  gated-GGUF        401 unless "Authorization: Bearer secret"
Anything else is 404.

--dump DIR writes every served file to DIR/{org}/{name}/{file} so a test can cmp.
Each request is logged to stderr as: REQ <path> range=<Range or -> -> <status> [dropped]
"""
import argparse
import hashlib
import http.server
import json
import os
import random
import sys
import threading


def blob(seed, n, magic=b""):
    return magic + random.Random(seed).randbytes(n - len(magic))


def make_repos():
    gguf = b"GGUF\x03\x00\x00\x00"
    return {
        "test/tiny-GGUF": {
            "files": {
                "README.md": b"# tiny\n",
                "tiny.Q8_0.gguf": blob(1, 1_500_000, gguf),
                "tiny.Q4_0.gguf": blob(2, 2_345_679, gguf),
            },
            "drop_first": True,
        },
        "test/norange-GGUF": {
            "files": {"nr.Q4_1.gguf": blob(3, 1_234_567, gguf)},
            "drop_first": True,
            "no_range": True,
        },
        "test/bad-GGUF": {"files": {"bad.Q4_0.gguf": blob(4, 300_000, gguf)}, "bad_sha": True},
        "test/broken-GGUF": {"files": {"gone.Q4_0.gguf": None}},
        "test/many-GGUF": {
            "files": {"m.IQ2_XS.gguf": blob(5, 1000, gguf), "m.Q5_K_M.gguf": blob(6, 1000, gguf),
                      "m.Q4_0_4_4.gguf": blob(7, 1000, gguf)},
        },
        "test/tiny-safetensors": {
            "files": {
                "config.json": b'{"model_type": "llama", "hidden_size": 64}\n',
                "tokenizer.json": b'{"model": {"type": "BPE"}}\n',
                "tokenizer_config.json": b"{}\n",
                "model.safetensors": blob(8, 700_001, b"\x08\x00\x00\x00\x00\x00\x00\x00{}      "),
                "README.md": b"# st\n",
                "onnx/model.onnx": b"not fetched",
            },
        },
        "test/gated-GGUF": {"files": {"g.Q8_0.gguf": blob(9, 50_000, gguf)}, "token": "secret"},
    }


REPOS = make_repos()
LFS_SUFFIXES = (".gguf", ".safetensors")
lock = threading.Lock()
seen = set()  # (repo, file) already requested once: the drop happens only the first time
by_sha = {}  # sha256 -> (repo, file, bytes)
for rid, repo in REPOS.items():
    for fname, data in repo["files"].items():
        if data is not None:
            by_sha[hashlib.sha256(data).hexdigest()] = (rid, fname, data)


def log(path, rng, status, extra=""):
    sys.stderr.write(f"REQ {path} range={rng or '-'} -> {status}{extra}\n")
    sys.stderr.flush()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        log(self.path, self.headers.get("Range"), status)

    def not_found(self):
        self.reply(404, b'{"error":"Repository not found"}', [("Content-Type", "application/json")])

    def authorized(self, repo):
        tok = repo.get("token")
        return not tok or self.headers.get("Authorization") == f"Bearer {tok}"

    def do_GET(self):
        parts = self.path.split("?")[0].split("/")[1:]
        if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] == "revision":
            return self.api(f"{parts[2]}/{parts[3]}")
        if len(parts) >= 5 and parts[2] == "resolve":
            return self.resolve(f"{parts[0]}/{parts[1]}", "/".join(parts[4:]))
        if len(parts) == 2 and parts[0] == "cdn" and parts[1] in by_sha:
            rid, fname, data = by_sha[parts[1]]
            return self.send_bytes(REPOS[rid], rid, fname, data)
        return self.not_found()

    def api(self, rid):
        repo = REPOS.get(rid)
        if repo is None:
            return self.not_found()
        if not self.authorized(repo):
            return self.reply(401, b'{"error":"Access to model is restricted"}')
        body = {"_id": "0" * 24, "id": rid, "sha": "1" * 40, "private": False,
                "siblings": [{"rfilename": f} for f in repo["files"]] + [{"rfilename": ".gitattributes"}]}
        self.reply(200, json.dumps(body).encode(), [("Content-Type", "application/json")])

    def resolve(self, rid, fname):
        repo = REPOS.get(rid)
        if repo is None or repo["files"].get(fname) is None:
            return self.not_found()
        if not self.authorized(repo):
            return self.reply(401, b"")
        data = repo["files"][fname]
        if not fname.endswith(LFS_SUFFIXES):
            return self.send_bytes(repo, rid, fname, data)
        sha = hashlib.sha256(data).hexdigest()
        linked = hashlib.sha256(b"wrong" + data).hexdigest() if repo.get("bad_sha") else sha
        self.reply(302, b"", [("Location", f"/cdn/{sha}"), ("X-Linked-Etag", f'"{linked}"'),
                              ("X-Linked-Size", str(len(data))), ("ETag", '"0123abcd"')])

    def send_bytes(self, repo, rid, fname, data):
        rng = self.headers.get("Range")
        start = 0
        if rng and not repo.get("no_range"):
            spec = rng.removeprefix("bytes=")
            lo, _, hi = spec.partition("-")
            if not lo.isdigit() or hi:
                return self.reply(400, b"unsupported range")
            start = int(lo)
            if start >= len(data):
                return self.reply(416, b"", [("Content-Range", f"bytes */{len(data)}")])
        with lock:
            first = (rid, fname) not in seen
            seen.add((rid, fname))
        status = 206 if start else 200
        self.send_response(status)
        self.send_header("Content-Length", str(len(data) - start))
        self.send_header("ETag", '"cdn-etag"')
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if first and repo.get("drop_first"):
            # half the body, then an abrupt close: the client sees a short read
            self.wfile.write(data[start:start + (len(data) - start) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            log(self.path, rng, status, " dropped")
            return
        self.wfile.write(data[start:])
        log(self.path, rng, status)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dump", help="write the served files under this directory")
    ap.add_argument("--max-seconds", type=float, default=600, help="exit after this long")
    args = ap.parse_args()
    if args.dump:
        for rid, repo in REPOS.items():
            for fname, data in repo["files"].items():
                if data is None:
                    continue
                path = os.path.join(args.dump, rid, fname)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as f:
                    f.write(data)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    timer = threading.Timer(args.max_seconds, srv.shutdown)
    timer.daemon = True
    timer.start()
    print(srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
