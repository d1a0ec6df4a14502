#!/usr/bin/env python3
"""The HTML report of `strait bench serve --report` in headless Debian
chromium (driven over the DevTools protocol like web_e2e.py):

    trace_e2e.py REPORT.html SCREENSHOT_DIR [--expect-trace]

Loads the file, checks that it renders with no script and nothing fetched
from elsewhere, that the latency CDFs (TTFT, TPOT, ITL) and the throughput
plot are drawn (an SVG with a visible line each), and with --expect-trace
that the batch-size plot and the per-span-kind breakdown hold data from the
server's trace. Screenshot: SCREENSHOT_DIR/report.png. Exit 0 when all
checks pass, 1 otherwise."""
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import web_e2e  # noqa: E402  (Page, start_chromium, check, failures)
from web_e2e import Page, check, start_chromium  # noqa: E402


def run(path, shots, expect_trace):
    profile = tempfile.mkdtemp(prefix="strait-trace-chromium-")
    proc, ws_url = start_chromium(profile)
    try:
        p = Page(ws_url)
        p.call("Page.enable")
        p.call("Network.enable")
        p.call("Runtime.enable")
        p.call("Page.navigate", url="file://" + os.path.abspath(path))
        p.wait("document.readyState === 'complete' && document.querySelectorAll('svg').length > 0", 30,
               "the report loads")
        n_svg = p.js("document.querySelectorAll('svg').length")
        check(n_svg >= 6, f"6 plots or more ({n_svg})")
        check(p.js("document.scripts.length") == 0, "no script in the report")
        fetched = [e["params"]["request"]["url"] for e in p.events if e.get("method") == "Network.requestWillBeSent"]
        check(all(u.startswith("file://") for u in fetched), f"nothing fetched from elsewhere ({fetched})")
        titles = p.js("[...document.querySelectorAll('svg text.t')].map(t => t.textContent)")
        for want in ("TTFT", "TPOT", "ITL", "throughput"):
            check(any(want in t for t in titles), f"a plot titled {want}: {titles}")
        # every line plot but the trace ones draws a visible line (non-empty bounding box)
        drawn = p.js("""[...document.querySelectorAll('svg')].map(s => {
            const t = s.querySelector('text.t'); const l = s.querySelector('polyline');
            const b = l ? l.getBBox() : null;
            return [t ? t.textContent : '', !!b && (b.width > 1 || b.height > 1)]; })""")
        for title, ok in drawn:
            if any(w in title for w in ("TTFT", "TPOT", "ITL", "throughput")):
                check(ok, f"'{title}' draws a line")
        if expect_trace:
            check(any("Batch size" in t and ok for t, ok in drawn), "the batch-size plot draws a line")
            bars = p.js("document.querySelectorAll('svg rect[fill=\"#0d9488\"]').length")
            check(bars >= 4, f"the breakdown has bars for several span kinds ({bars})")
            labels = p.js("[...document.querySelectorAll('svg text.yl')].map(t => t.textContent)")
            for kind in ("queued", "decode", "prefill"):
                check(kind in labels, f"the breakdown shows {kind}")
        size = p.js("[document.body.scrollWidth, document.body.scrollHeight]")
        check(size[0] > 400 and size[1] > 400, f"the page has a size ({size})")
        # the whole page in one picture
        p.call("Emulation.setDeviceMetricsOverride", width=1280, height=int(size[1]) + 40, deviceScaleFactor=1,
               mobile=False)
        p.shot(os.path.join(shots, "report.png"))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except Exception:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)


def main():
    path, shots = sys.argv[1], sys.argv[2]
    os.makedirs(shots, exist_ok=True)
    try:
        run(path, shots, "--expect-trace" in sys.argv[3:])
    except Exception as e:  # a driver failure is a test failure, with its cause
        check(False, f"driver: {type(e).__name__}: {e}")
    print(f"{len(web_e2e.failures)} failed", flush=True)
    return 1 if web_e2e.failures else 0


if __name__ == "__main__":
    sys.exit(main())
