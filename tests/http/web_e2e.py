#!/usr/bin/env python3
"""Browser test of the web UI of `strait run` (and of `strait chat` in front
of it), in headless Debian chromium driven over the DevTools protocol
(websocket-client).

    web_e2e.py URL SCREENSHOT_DIR [API_KEY [CHAT_URL]]

Loads URL (with API_KEY: the server wants it; the page says so and the key
is entered in the settings), checks the page runs under its Content-Security-Policy, sends a
message with the Enter key and watches the reply stream in, changes the
settings, stops a long answer (and sees the server abort it: no generation
left in flight), renders a hostile message (<script>, <img onerror>,
javascript: links) as text, reloads (the conversation is kept), and looks
at a phone-width layout. The Cluster view (reached by keyboard) shows the
single node "local" ready with all the model's layers, live from the status
stream, and nodes that failed or left as such; the Setup view shows the
join command or the fixed model. With CHAT_URL (`strait chat` proxying to
URL), a reply streams through the proxy and stop aborts it on the server
behind. Screenshots: SCREENSHOT_DIR/*.png. Every wait is bounded; exit 0
when all checks pass, 1 otherwise."""
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import websocket

CHROMIUM = os.environ.get("ST_CHROMIUM", "/usr/bin/chromium")
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)
    return cond


class Page:
    """One DevTools session on one page target."""

    def __init__(self, ws_url):
        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self.next_id = 0
        self.events = []

    def call(self, method, **params):
        self.next_id += 1
        mid = self.next_id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def js(self, expr):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"JS error in {expr!r}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait(self, expr, timeout, what):
        """Poll a JS condition until it is truthy (bounded by timeout seconds)."""
        end = time.time() + timeout
        while time.time() < end:
            v = self.js(expr)
            if v:
                return v
            time.sleep(0.05)
        check(False, f"{what} (waited {timeout} s for {expr})")
        return None

    def key(self, key, shift=False):
        mods = 8 if shift else 0
        common = dict(key=key, code=key, windowsVirtualKeyCode=13 if key == "Enter" else 0, modifiers=mods)
        self.call("Input.dispatchKeyEvent", type="keyDown", text="\r" if key == "Enter" else "", **common)
        self.call("Input.dispatchKeyEvent", type="keyUp", **common)

    def shot(self, path):
        data = self.call("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        print(f"screenshot: {path}", flush=True)


def start_chromium(profile):
    args = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-extensions", "--disable-background-networking", "--remote-debugging-port=0",
            "--remote-allow-origins=*", f"--user-data-dir={profile}", "--window-size=1280,860", "about:blank"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port_file = os.path.join(profile, "DevToolsActivePort")
    end = time.time() + 30
    words = []
    # chromium creates the file before it writes the port into it: wait for the content
    while time.time() < end and not words:
        if proc.poll() is not None:
            raise RuntimeError(f"chromium exited with {proc.returncode}")
        if os.path.exists(port_file):
            words = open(port_file).read().split()
        if not words:
            time.sleep(0.05)
    if not words:
        proc.kill()  # nobody else holds it yet
        raise RuntimeError("chromium wrote no DevToolsActivePort within 30 s")
    port = int(words[0])
    for _ in range(200):
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5))
        pages = [t for t in targets if t.get("type") == "page"]
        if pages:
            return proc, pages[0]["webSocketDebuggerUrl"]
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("chromium shows no page target")


def get_json(url, key):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    return json.load(urllib.request.urlopen(req, timeout=5))


def in_flight(url, key):
    req = urllib.request.Request(url + "/metrics", headers={"Authorization": f"Bearer {key}"} if key else {})
    text = urllib.request.urlopen(req, timeout=5).read().decode()
    m = re.search(r"^strait_http_requests_in_flight (\d+)", text, re.M)
    return int(m.group(1)) if m else -1


def chat_through_proxy(p, chat_url, url, key, shots):
    """A reply streams through `strait chat`, and stop aborts it on the server behind."""
    p.call("Page.navigate", url=chat_url + "/")
    p.wait("document.readyState === 'complete' && !!window.strait", 20, "the page loads from strait chat")
    p.js("document.getElementById('open-settings').click()")
    if key:
        p.js(f"document.getElementById('s-api-key').value = {json.dumps(key)}")
    p.js("document.getElementById('s-temperature').value = '0'; document.getElementById('s-max-tokens').value = '1500'")
    p.js("document.getElementById('s-save').click()")
    p.wait("document.getElementById('health').textContent === 'ready'", 20, "health through the proxy shows ready")
    p.js("document.getElementById('input').value = 'Tell me a very long story about a lighthouse keeper.'")
    p.js("document.getElementById('send').click()")
    last = "document.querySelector('.msg.assistant:last-of-type')"
    p.wait(f"!!{last}", 5, "sent through the proxy")
    lengths = set()
    end = time.time() + 60
    while time.time() < end and len(lengths - {0}) < 5:
        lengths.add(p.js(f"{last}.querySelector('.body').textContent.length"))
        time.sleep(0.02)
    check(len(lengths - {0}) >= 5, f"tokens stream in through the proxy ({len(lengths - {0})} distinct lengths)")
    check(in_flight(url, key) == 1, "one generation in flight behind the proxy")
    p.shot(os.path.join(shots, "chat-proxy.png"))
    p.js("document.getElementById('stop').click()")
    check(p.wait(f"{last}.dataset.done", 10, "stop ends the proxied reply") == "stopped", "proxied reply marked stopped")
    end = time.time() + 10
    while time.time() < end and in_flight(url, key) != 0:
        time.sleep(0.05)
    check(in_flight(url, key) == 0, "the server behind the proxy aborted the generation after stop")
    p.js("location.hash = '#cluster'")
    p.wait("!!document.querySelector('#nodes tr[data-node=\"local\"]')", 10, "the Cluster view works through the proxy")


def run(url, shots, key, chat_url):
    profile = tempfile.mkdtemp(prefix="strait-web-")
    proc, ws_url = start_chromium(profile)
    try:
        p = Page(ws_url)
        p.call("Page.enable")
        p.call("Log.enable")
        p.call("Runtime.enable")
        p.call("Page.navigate", url=url + "/")
        p.wait("document.readyState === 'complete' && !!window.strait", 20, "the page loads and app.js runs")
        if key:
            p.wait("document.getElementById('health').textContent.includes('API key')", 20,
                   "the page says an API key is needed")
        # Greedy decoding throughout: what the model answers, and so how long the replies
        # are, is then the same on every run.
        p.js("document.getElementById('open-settings').click()")
        if key:
            p.js(f"document.getElementById('s-api-key').value = {json.dumps(key)}")
        p.js("document.getElementById('s-temperature').value = '0'")
        p.js("document.getElementById('s-save').click()")
        p.wait("document.getElementById('health').textContent === 'ready'", 20, "health shows ready")
        model = p.wait("document.getElementById('model').textContent", 10, "the model name is shown")
        check(bool(model), f"model name shown: {model!r}")

        # Keyboard: Shift+Enter is a new line, Enter sends.
        p.js("document.getElementById('input').focus()")
        p.call("Input.insertText", text="Name three colours.")
        p.key("Enter", shift=True)
        p.call("Input.insertText", text="Answer briefly.")
        check(p.js("document.getElementById('input').value") == "Name three colours.\nAnswer briefly.",
              "Shift+Enter inserts a new line without sending")
        check(p.js("document.querySelectorAll('.msg').length") == 0, "nothing sent before Enter")
        p.key("Enter")
        p.wait("document.querySelectorAll('.msg.assistant').length === 1", 5, "Enter sends the message")
        # Watch the reply grow: several distinct lengths before it ends.
        lengths = set()
        end = time.time() + 60
        last = "document.querySelector('.msg.assistant:last-of-type')"
        while time.time() < end:
            st = p.js(f"(() => {{ const b = {last}; return [b.querySelector('.body').textContent.length,"
                      " b.dataset.done || ''] })()")
            if not st[1]:
                lengths.add(st[0])
            else:
                break
            time.sleep(0.02)
        check(len(lengths - {0}) >= 3, f"tokens stream in (saw {len(lengths - {0})} distinct lengths while streaming)")
        done = p.wait(f"{last}.dataset.done", 60, "the reply finishes")
        check(done in ("stop", "length"), f"reply finished with {done!r}")
        stats = p.js(f"{last}.querySelector('.stats').textContent")
        check(bool(re.search(r"\d+ tokens", stats)) and "TTFT" in stats and "tok/s" in stats,
              f"per-message stats shown: {stats!r}")
        check(p.js("document.getElementById('stop').hidden") is True, "stop button hidden when idle")
        p.shot(os.path.join(shots, "chat-desktop.png"))

        # Settings: a large max tokens through the dialog, kept in localStorage.
        p.js("document.getElementById('open-settings').click()")
        check(p.js("document.getElementById('settings').open") is True, "settings dialog opens")
        p.js("document.getElementById('s-max-tokens').value = '1500';"
             "document.getElementById('s-temperature').value = '0';"
             "document.getElementById('s-system').value = 'You are a storyteller.'")
        p.shot(os.path.join(shots, "settings.png"))
        p.js("document.getElementById('s-save').click()")
        saved = json.loads(p.js("localStorage.getItem('strait.settings')") or "{}")
        check(saved.get("max_tokens") == 1500 and saved.get("temperature") == 0
              and saved.get("system") == "You are a storyteller." and saved.get("apiKey") == key, f"settings saved: {saved}")

        # Stop a long answer: the fetch is aborted and the server drops the request.
        p.js("document.getElementById('input').value = 'Tell me a very long story about a lighthouse keeper.'")
        p.js("document.getElementById('send').click()")
        p.wait("document.querySelectorAll('.msg.assistant').length === 2", 5, "second message sent")
        p.wait(f"!document.getElementById('stop').hidden && {last}.querySelector('.body').textContent.length > 40",
               60, "the long answer starts")
        check(in_flight(url, key) == 1, "one generation in flight while streaming")
        p.js("document.getElementById('stop').click()")
        check(p.wait(f"{last}.dataset.done", 10, "stop ends the reply") == "stopped", "reply marked stopped")
        end = time.time() + 10
        while time.time() < end and in_flight(url, key) != 0:
            time.sleep(0.05)
        check(in_flight(url, key) == 0, "the server aborted the generation after stop")
        n_stop = p.js(f"parseInt({last}.querySelector('.stats').textContent)")
        check(isinstance(n_stop, int) and 0 < n_stop < 1500, f"stopped after {n_stop} of 1500 tokens")

        # Hostile output is text, never markup.
        evil = ("<script>window.__pwned = 1</script> <img src=x onerror=\"window.__pwned = 2\"> "
                "**bold** and `code`\n\n```html\n<b>not bold</b>\n```\n\n"
                "[bad](javascript:window.__pwned=3) [good](https://example.com/)\n\n"
                "<think>I should reason here.</think>The answer is 42.")
        p.js(f"window.__box = window.strait.show('assistant', {json.dumps(evil)}); true")
        p.js("window.__box.querySelector('a[href^=https]') && window.__box.querySelector('a[href^=https]')"
             ".addEventListener('click', (e) => e.preventDefault()); true")
        p.js("(() => { const a = window.__box.querySelector('a'); if (a) a.click(); })()")
        check(p.js("window.__box.querySelectorAll('script, img, iframe').length") == 0,
              "no script/img element made from model output")
        check("<script>window.__pwned = 1</script>" in p.js("window.__box.textContent"),
              "<script> shown as text")
        check(p.js("window.__pwned") is None, "no injected code ran")
        check(p.js("window.__box.querySelector('strong') && window.__box.querySelector('strong').textContent")
              == "bold", "markdown bold rendered")
        check(p.js("window.__box.querySelector('pre code').textContent") == "<b>not bold</b>",
              "code block kept verbatim")
        check(p.js("[...window.__box.querySelectorAll('a')].map(a => a.href).join(' ')") == "https://example.com/",
              "only the http(s) link became a link")
        check(p.js("(() => { const d = window.__box.querySelector('details.think');"
                   " return !!d && !d.open && d.textContent.includes('I should reason') })()") is True,
              "finished <think> section is collapsed")
        p.js("window.__box.querySelector('details.think summary').click()")
        check(p.js("window.__box.querySelector('details.think').open") is True, "<think> section expands")
        p.shot(os.path.join(shots, "chat-rendering.png"))

        # Reload: the conversation comes back from localStorage.
        p.call("Page.reload", ignoreCache=True)
        p.wait("document.readyState === 'complete' && !!window.strait && "
               "document.querySelectorAll('.msg').length === 4", 20, "the conversation is kept across reload")
        check(p.js("document.querySelectorAll('.msg.user').length") == 2, "both user messages restored")
        check(p.js("document.querySelector('#conversations li.current button.open').textContent")
              .startswith("Name three colours"), "conversation listed by its first message")

        # Cluster view, reached from the keyboard: the single node "local", ready, holding every layer.
        try:
            st = get_json(url + "/cluster/status", key)
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"GET /cluster/status answered {e.code}: the server must register it (tools/run.c)")
        n_layers = st.get("n_layers") or max((n.get("layers") or [0, 0])[1] for n in st.get("nodes", []))
        check(n_layers > 0, f"the server's /cluster/status gives the model's layers ({n_layers})")
        p.js("document.getElementById('tab-cluster').focus()")
        p.key("Enter")
        p.wait("location.hash === '#cluster' && !document.getElementById('view-cluster').hidden", 5,
               "Enter on the Cluster tab shows the Cluster view")
        check(p.js("document.getElementById('view-chat').hidden") is True, "the chat is hidden meanwhile")
        row = "document.querySelector('#nodes tr[data-node=\"local\"]')"
        p.wait(f"{row} && {row}.dataset.state === 'ready'", 10, "node 'local' is listed as ready")
        check(p.js(f"{row}.querySelector('[data-layers]').dataset.layers") == f"0-{n_layers}",
              f"node 'local' holds layers 0-{n_layers}")
        check(abs(p.js(f"{row}.querySelector('.bar span').getBoundingClientRect().width / "
                       f"{row}.querySelector('.bar').clientWidth") - 1) < 0.05, "its layer bar spans the model")
        check(p.js(f"{row}.querySelector('.bar').getAttribute('aria-label')") == f"layers 0\u2013{n_layers} of {n_layers}",
              "the layer bar has a text label")
        check(p.js("document.querySelectorAll('#pipelines tbody tr[data-state]').length") >= 1, "a pipeline is listed")
        check(p.js("document.getElementById('cluster-live').textContent").startswith("Live"),
              "the view follows the status stream")
        p.shot(os.path.join(shots, "cluster.png"))
        # A node that failed or left is shown as such (the page's own rendering of a status).
        p.js("window.strait.showStatus({model: 'm', n_nodes_expected: 2, n_layers: 30, join_command: 'strait join -s h:3003',"
             " nodes: [{id: 'a', name: 'alpha', device: 'cpu', memory_bytes: 8589934592, layers: [0, 15], state: 'ready', load: 1},"
             " {id: 'b', name: 'bravo', device: 'cuda:0', memory_bytes: 25769803776, layers: null, state: 'failed',"
             " error: 'heartbeat timeout'}], pipelines: [{id: 0, stages: ['a', 'b'], state: 'failed', running: 0}]})")
        check(p.js("(() => { const r = document.querySelector('#nodes tr[data-node=\"bravo\"]');"
                   " return !!r && r.classList.contains('gone') && r.textContent.includes('failed')"
                   " && r.textContent.includes('heartbeat timeout') })()") is True, "a failed node is shown as failed")
        check(p.js("document.querySelector('#pipelines tbody tr').textContent.includes('alpha \u2192 bravo')") is True,
              "pipeline stages are named by node")
        p.shot(os.path.join(shots, "cluster-failed.png"))

        # Setup view: the join command to copy, or (single machine) the fixed model.
        p.js("document.getElementById('tab-setup').click()")
        p.wait("!document.getElementById('view-setup').hidden", 5, "the Setup view opens")
        p.wait("(() => { const t = document.getElementById('join-command').textContent;"
               " return t && t !== '\u2026' })()", 10, "the join command or its absence is shown")
        join = p.js("document.getElementById('join-command').textContent")
        if st.get("join_command"):
            check(join == st["join_command"], f"the join command is shown as the server gives it: {join!r}")
        else:
            check("No node needs to join" in join, f"no join command on a single machine: {join!r}")
            p.wait("!document.getElementById('setup-model-fixed').hidden || "
                   "document.getElementById('setup-model').value !== ''", 10, "a model is shown")
        mode = p.wait("document.getElementById('view-setup').dataset.setup", 10, "the setup route was probed")
        check(mode in ("fixed", "offered"), f"setup mode {mode!r}")
        fixed = p.js("document.getElementById('setup-model-fixed').hidden ? '' : "
                     "document.getElementById('setup-model-fixed').textContent")
        check(bool(fixed) == (p.js("document.getElementById('setup-apply').hidden") is True),
              "a fixed model goes with no Apply button")
        if fixed:
            check(fixed.split(" (")[0] in (st.get("model"), model), f"the fixed model is the served one: {fixed!r}")
        p.shot(os.path.join(shots, "setup.png"))
        p.js("location.hash = '#chat'")
        p.wait("!document.getElementById('view-chat').hidden", 5, "back to the chat")

        # Phone width: one column, nothing wider than the screen.
        p.call("Emulation.setDeviceMetricsOverride", width=390, height=844, deviceScaleFactor=2, mobile=True)
        p.wait("innerWidth === 390", 5, "phone viewport applied")
        check(p.js("document.documentElement.scrollWidth <= innerWidth"), "no horizontal scroll at 390 px")
        p.wait("(() => { const s = document.getElementById('side'); return s.getBoundingClientRect().right <= 0"
               " && getComputedStyle(s).visibility === 'hidden' })()", 5, "the conversation drawer is closed at 390 px")
        check(p.js("getComputedStyle(document.getElementById('toggle-side')).display !== 'none'"),
              "conversation drawer button shown at phone width")
        r = p.js("(() => { const r = document.getElementById('send').getBoundingClientRect();"
                 " return [r.right, r.bottom] })()")
        check(r[0] <= 390 and r[1] <= 844, f"send button on screen at phone width ({r})")
        p.shot(os.path.join(shots, "chat-phone.png"))
        p.js("document.getElementById('toggle-side').click()")
        p.wait("document.getElementById('side').getBoundingClientRect().left >= 0", 5, "drawer opens")
        p.shot(os.path.join(shots, "chat-phone-drawer.png"))
        p.js("document.getElementById('toggle-side').click(); location.hash = '#cluster'")
        p.wait("!document.getElementById('view-cluster').hidden", 5, "the Cluster view at phone width")
        check(p.js("document.documentElement.scrollWidth <= innerWidth"), "no page-wide horizontal scroll in Cluster at 390 px")
        p.shot(os.path.join(shots, "cluster-phone.png"))
        p.call("Emulation.clearDeviceMetricsOverride")

        csp = [e for e in p.events if "Content Security Policy" in json.dumps(e)]
        check(not csp, f"no Content-Security-Policy violations ({csp[:1]})")
        errors = [e["params"]["entry"] for e in p.events
                  if e.get("method") == "Log.entryAdded" and e["params"]["entry"].get("level") == "error"
                  and not (key and "status of 401" in e["params"]["entry"].get("text", "")
                           and e["params"]["entry"].get("url", "").endswith("/v1/models"))  # the probe before the key
                  and not e["params"]["entry"].get("url", "").endswith("/cluster/setup")]  # the probe of the setup route
        check(not errors, f"no errors in the browser log ({errors[:2]})")
        if chat_url:
            chat_through_proxy(p, chat_url, url, key, shots)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)


def main():
    url, shots = sys.argv[1].rstrip("/"), sys.argv[2]
    os.makedirs(shots, exist_ok=True)
    try:
        run(url, shots, sys.argv[3] if len(sys.argv) > 3 else "", sys.argv[4].rstrip("/") if len(sys.argv) > 4 else "")
    except Exception as e:  # a driver failure is a test failure, with its cause
        check(False, f"driver: {type(e).__name__}: {e}")
    print(f"{len(failures)} failed", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
