#!/usr/bin/env python3
"""The live dashboard in headless Chromium, driven over the DevTools protocol (standard library
only: a minimal WebSocket client). Used by scripts/check-dashboard.sh.

live URL OUT_DIR     while a sweep runs: a running trial's curve gains points and a finished
                     trial reaches the leaderboard, on the page as first loaded (no reload);
                     screenshots OUT_DIR/dashboard-running.png and dashboard-finished.png.
served URL OUT_DIR   sweep-analyze --serve: the page shows the leaderboard and the report's
                     charts; screenshot OUT_DIR/dashboard-served.png.
"""
import base64
import json
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request


class DevTools:
    """One page of a headless Chromium, over the DevTools protocol's WebSocket."""

    def __init__(self, profile):
        self.process = subprocess.Popen(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
             "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1", f"--user-data-dir={profile}",
             "--window-size=1400,1800", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        port = None
        deadline = time.time() + 60
        while port is None and time.time() < deadline:
            line = self.process.stderr.readline()
            if not line and self.process.poll() is not None:
                break
            m = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
            if m:
                port = int(m.group(1))
        if port is None:
            raise SystemExit("chromium did not start its DevTools endpoint")
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
        page = next(t for t in targets if t["type"] == "page")
        m = re.match(r"ws://([^/]+)(/.*)", page["webSocketDebuggerUrl"])
        host, _, wsport = m.group(1).partition(":")
        self.sock = socket.create_connection((host, int(wsport)), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET {m.group(2)} HTTP/1.1\r\nHost: {m.group(1)}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise SystemExit("DevTools closed the WebSocket handshake")
            response += chunk
        if b" 101 " not in response.split(b"\r\n", 1)[0]:
            raise SystemExit(f"DevTools refused the WebSocket: {response[:200]!r}")
        self.buffer = response.split(b"\r\n\r\n", 1)[1]
        self.next_id = 0

    def _send(self, text):
        payload = text.encode()
        mask = os.urandom(4)
        header = bytes([0x81])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", n)
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def _read(self, n):
        while len(self.buffer) < n:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise SystemExit("DevTools closed the connection")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def _message(self):
        parts = b""
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            data = self._read(n)
            if b0 & 0x0F == 8:
                raise SystemExit("DevTools closed the WebSocket")
            if b0 & 0x0F in (0, 1, 2):
                parts += data
                if b0 & 0x80:
                    return json.loads(parts)

    def call(self, method, **params):
        self.next_id += 1
        self._send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = self._message()
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise SystemExit(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise SystemExit(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path):
        height = self.evaluate("Math.min(6000, document.documentElement.scrollHeight)")
        self.call("Emulation.setDeviceMetricsOverride", width=1400, height=int(height), deviceScaleFactor=1, mobile=False)
        data = self.call("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        self.call("Emulation.clearDeviceMetricsOverride")
        print(f"  screenshot: {path}")

    def close(self):
        self.process.terminate()
        self.process.wait(timeout=20)


# What the page shows, read in the page (its own DOM, as the script left it).
STATE = """(() => {
  const rows = Array.from(document.querySelectorAll('#dash-running tr[data-trial]'));
  const leaderboard = Array.from(document.querySelectorAll('#dash-tables .table'))
    .find(t => t.querySelector('h2') && t.querySelector('h2').textContent.startsWith('Leaderboard'));
  const ranked = leaderboard ? Array.from(leaderboard.querySelectorAll('tbody tr')).map(r => r.cells[1].textContent) : [];
  const nav = performance.getEntriesByType('navigation');
  return {loadedAt: window.dashboard ? window.dashboard.loadedAt : null, updates: window.dashboard ? window.dashboard.updates : 0,
          navigations: nav.length, connection: (document.getElementById('dash-connection') || {textContent: ''}).textContent,
          running: rows.map(r => [r.dataset.trial, parseInt(r.dataset.points, 10)]), ranked: ranked,
          charts: Array.from(document.querySelectorAll('#dash-charts figure.chart')).map(f => f.id),
          liveChart: !!document.querySelector('#chart-live-curves svg path'),
          state: (document.querySelector('#dash-summary .state') || {textContent: ''}).textContent};
})()"""


def wait(browser, what, condition, timeout):
    deadline = time.time() + timeout
    state = browser.evaluate(STATE)
    while not condition(state):
        if time.time() > deadline:
            raise SystemExit(f"dashboard: {what} did not happen within {timeout} s; the page shows {json.dumps(state)}")
        time.sleep(0.2)
        state = browser.evaluate(STATE)
    return state


def live(url, out):
    browser = DevTools(tempfile.mkdtemp(prefix="dashboard-chromium-"))
    try:
        browser.call("Page.enable")
        browser.call("Page.navigate", url=url)
        first = wait(browser, "a running trial with a point on its curve",
                     lambda s: s["loadedAt"] and s["connection"] == "live" and any(p >= 1 for _, p in s["running"]), 60)
        trial, points = next((t, p) for t, p in first["running"] if p >= 1)
        print(f"  page loaded; trial {trial} running with {points} point(s) on its curve")
        grown = wait(browser, f"trial {trial}'s curve gaining points",
                     lambda s: any(t == trial and p > points for t, p in s["running"]) or trial in s["ranked"], 60)
        after = dict(grown["running"]).get(trial)
        if after is None:
            raise SystemExit(f"trial {trial} finished before its curve was seen to grow (raise its epochs or sleep)")
        if not grown["liveChart"]:
            raise SystemExit("the live curves chart has no line")
        print(f"  trial {trial}: {points} → {after} points, {grown['updates']} updates pushed, same page")
        done = wait(browser, "a finished trial in the leaderboard while another runs",
                    lambda s: len(s["ranked"]) >= 1 and any(p >= 3 for _, p in s["running"]), 120)
        print(f"  leaderboard: {', '.join(done['ranked'])}; running: {', '.join(f'{t} ({p} points)' for t, p in done['running'])}")
        browser.screenshot(os.path.join(out, "dashboard-running.png"))
        end = wait(browser, "the sweep's end", lambda s: s["state"] == "finished", 180)
        for s in (grown, done, end):
            if s["loadedAt"] != first["loadedAt"] or s["navigations"] != 1:
                raise SystemExit(f"the page was reloaded: {json.dumps(s)}")
        missing = [c for c in ("chart-train-loss", "chart-parallel-coordinates", "chart-best-so-far") if c not in end["charts"]]
        if missing:
            raise SystemExit(f"charts missing at the end: {missing} (has {end['charts']})")
        print(f"  sweep finished on the page: {len(end['ranked'])} ranked, charts {', '.join(end['charts'])}")
        browser.screenshot(os.path.join(out, "dashboard-finished.png"))
    finally:
        browser.close()


def served(url, out):
    browser = DevTools(tempfile.mkdtemp(prefix="dashboard-chromium-"))
    try:
        browser.call("Page.enable")
        browser.call("Page.navigate", url=url)
        state = wait(browser, "the served results", lambda s: s["connection"] == "live" and s["ranked"] and s["updates"] >= 2, 60)
        if "chart-heatmap" not in state["charts"] and "chart-train-loss" not in state["charts"]:
            raise SystemExit(f"the served page has no report charts: {state['charts']}")
        print(f"  served results: {len(state['ranked'])} ranked, charts {', '.join(state['charts'])}")
        browser.screenshot(os.path.join(out, "dashboard-served.png"))
    finally:
        browser.close()


if __name__ == "__main__":
    mode, url, out = sys.argv[1:4]
    {"live": live, "served": served}[mode](url, out)
