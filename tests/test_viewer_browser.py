"""End-to-end viewer test in a real browser: ns-viewer + headless Chromium (Debian's `chromium` package).

1. trains a tiny checkpoint with `ns-train neuface-dtu` (tiny networks, 30 iterations, half-size images),
2. starts `ns-viewer --load-config ... --viewer.websocket-port <free port>` on 127.0.0.1,
3. opens the page in headless Chromium, driven over the DevTools protocol (no extra Python package:
   the `websockets` client that viser already depends on),
4. waits for the rendered frame and checks the object is visible against the empty (black) scene, and that
   the "Output type" list is the model's (rgb first and selected),
5. with real mouse events on the "NeuFace lighting" panel, switches the light to the warm_side preset, moves
   the "Light yaw (deg)" slider and then the "Light intensity" slider, and checks that each next frame differs
   in the object region (and not in the empty scene), the last one darker.

Chromium is required: when it is missing the test FAILS (it is never skipped) and says what to install:
`apt-get install -y chromium`. Set NEUFACE_CHROMIUM to use another Chromium/Chrome binary and
NEUFACE_VIEWER_SHOTS=<dir> to keep the screenshots. Takes about 1-1.5 minutes on 2 CPU cores.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pytest
from PIL import Image

CHROMIUM_HINT = (
    "headless Chromium is required for the viewer browser test; install it with "
    "`apt-get update && apt-get install -y chromium` (Debian/Ubuntu) or set NEUFACE_CHROMIUM=/path/to/chrome"
)
BIN = Path(sys.executable).parent
TINY_TRAIN_ARGS = [
    "--max-num-iterations", "30",
    "--steps-per-save", "1000",
    "--steps-per-eval-image", "1000",
    "--vis", "tensorboard",
    "--final-mesh-resolution", "0",
    "--pipeline.datamanager.train-num-rays-per-batch", "256",
    "--pipeline.model.sdf-field.sdf-network.hidden-dim", "64",
    "--pipeline.model.sdf-field.appearance.hidden-dim", "32",
    "--pipeline.model.sdf-field.integrated-basis.hidden-dim", "16",
    "--pipeline.model.dense-steps", "16",
    "neuface-dtu-data", "--downscale-factor", "2",
]  # fmt: skip


def find_chromium() -> str:
    candidates = [os.environ.get("NEUFACE_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"]
    for candidate in candidates:
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    pytest.fail(CHROMIUM_HINT, pytrace=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen) -> None:
    """Stop a process this test started (it leads its own process group, with its data-loader workers)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(15)


class Chromium:
    """Minimal DevTools-protocol client for one headless Chromium page."""

    def __init__(self, executable: str, width: int = 1400, height: int = 1000):
        from websockets.sync.client import connect

        self.profile = tempfile.mkdtemp(prefix="neuface-chromium-")
        self.log = open(os.path.join(self.profile, "stderr.log"), "w")
        args = [
            executable, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--use-angle=swiftshader", "--enable-unsafe-swiftshader",  # WebGL (viser's three.js canvas) on the CPU
            f"--user-data-dir={self.profile}", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
            f"--window-size={width},{height}", "about:blank",
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=self.log, start_new_session=True)
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.time() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"chromium did not start: {Path(self.log.name).read_text()[-2000:]}")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30))
        page = next(t for t in targets if t["type"] == "page")
        self.ws = connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=30)
        self.next_id = 0
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def call(self, method: str, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=120))
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def js(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self) -> np.ndarray:
        data = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))

    def click(self, x: float, y: float) -> None:
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", buttons=1, clickCount=1)

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:
            pass
        stop(self.proc)
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("viewer_run")
    cmd = [str(BIN / "ns-train"), "neuface-dtu", "--output-dir", str(out), *TINY_TRAIN_ARGS]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # a few-second job; more threads only contend on small CI machines
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    configs = sorted(out.glob("**/config.yml"))
    checkpoints = sorted(out.glob("**/nerfstudio_models/*.ckpt"))
    assert result.returncode == 0 and configs and checkpoints, (result.stdout[-3000:], result.stderr[-3000:])
    return configs[0]


def _status(browser: Chromium) -> str:
    return browser.js("document.body ? document.body.innerText : ''") or ""


def _resolution(text: str):
    """(width, height) from the viewer's "Resolution: WxHpx" line, (0, 0) when absent."""
    for line in text.splitlines():
        if line.startswith("Resolution:"):
            w, _, h = line.split(":", 1)[1].strip().removesuffix("px").partition("x")
            if w.isdigit() and h.isdigit():
                return int(w), int(h)
    return 0, 0


def _element_box(browser: Chromium, label: str, query: str = ""):
    """Scroll the GUI element labelled `label` (optionally a descendant matching `query`) into view; its box."""
    return browser.js(
        "(() => { const l = [...document.querySelectorAll('label')].find(l => l.innerText.trim() === %s);"
        " let el = document.getElementById(l.htmlFor); %s el.scrollIntoView({block: 'center'});"
        " const r = el.getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; })()"
        % (json.dumps(label), f"el = el.querySelector({json.dumps(query)});" if query else "")
    )


def _slider_value(browser: Chromium, label: str) -> float:
    return float(
        browser.js(
            "(() => { const l = [...document.querySelectorAll('label')].find(l => l.innerText.trim() === %s);"
            " return document.getElementById(l.htmlFor).querySelector('[role=slider]').getAttribute('aria-valuenow'); })()"
            % json.dumps(label)
        )
    )


def _click_slider(browser: Chromium, label: str, fraction: float) -> None:
    x, y, w, h = _element_box(browser, label)
    browser.click(x + fraction * w, y + h / 2)


def _choose(browser: Chromium, label: str, option: str) -> None:
    """Open the dropdown labelled `label` and click `option` (real mouse events)."""
    x, y, w, h = _element_box(browser, label)
    browser.click(x + w / 2, y + h / 2)
    deadline = time.time() + 10
    while True:
        box = browser.js(
            "(() => { const l = [...document.querySelectorAll('label')].find(l => l.innerText.trim() === %s);"
            " const input = document.getElementById(l.htmlFor);"
            " const list = document.getElementById(input.getAttribute('aria-controls'));"
            " const o = list && [...list.querySelectorAll('[role=option]')].find(o => o.innerText.trim() === %s);"
            " if (!o) return null; const r = o.getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; })()"
            % (json.dumps(label), json.dumps(option))
        )
        if box and box[2] > 0:
            break
        assert time.time() < deadline, f"the {label!r} dropdown did not offer {option!r}"
        time.sleep(0.2)
    browser.click(box[0] + box[2] / 2, box[1] + box[3] / 2)


def _dropdown_value(browser: Chromium, label: str) -> str:
    return browser.js(
        "(() => { const l = [...document.querySelectorAll('label')].find(l => l.innerText.trim() === %s);"
        " return document.getElementById(l.htmlFor).value; })()" % json.dumps(label)
    )


def _canvas_box(browser: Chromium):
    """The part of the 3D canvas not covered by the control panel (which floats over its right side)."""
    box = browser.js(
        "(() => { const c = [...document.querySelectorAll('canvas')].sort((a, b) => b.width * b.height - a.width * a.height)[0];"
        " const r = c.getBoundingClientRect();"
        " const l = [...document.querySelectorAll('label')].find(l => l.innerText.trim() === 'Max res');"
        " return [r.x, r.y, r.width, r.height, l.getBoundingClientRect().x]; })()"
    )
    x, y, w, h, panel_label = (int(round(v)) for v in box)
    right = min(x + w, panel_label - 60)
    return slice(y + 5, y + h - 5), slice(x + 5, right)


class FrameWatcher:
    """Reads the rendered frame (the 3D canvas region of page screenshots) and the viewer's status line."""

    def __init__(self, browser: Chromium, diagnostics: Optional[Callable[[], str]] = None):
        self.browser = browser
        self.diagnostics = diagnostics
        self.region = _canvas_box(browser)
        self.max_res = 512  # nerfstudio's "Max res" default; the full-resolution frame has max(w, h) == max_res

    def canvas(self) -> np.ndarray:
        rows, cols = self.region
        return self.browser.screenshot()[rows, cols].astype(np.float32)

    def full_resolution(self) -> bool:
        return max(_resolution(_status(self.browser))) >= self.max_res - 1

    def wait_for_new_frame(self, previous, mask, timeout: float, min_change: float = 0.0):
        """Wait until the canvas settles on a full-resolution frame whose mean change inside `mask` w.r.t.
        `previous` exceeds `min_change`: the status has reported the full resolution for at least 1 s and two
        screenshots 0.5 s apart are equal (the browser may still be decoding a frame when the status arrives).
        Returns (frame, seconds to the first changed screenshot, seconds to the settled frame)."""
        start, first_change, last, full_since = time.time(), None, None, None
        while time.time() - start < timeout:
            frame = self.canvas()
            now = time.time()
            changed = previous is None or np.abs(frame - previous).mean(-1)[mask].mean() > min_change
            if changed and first_change is None:
                first_change = now - start
            full_since = (full_since or now) if self.full_resolution() else None
            if changed and full_since is not None and now - full_since >= 1.0 and np.array_equal(frame, last):
                return frame, first_change, now - start
            last = frame
            time.sleep(0.5)
        raise AssertionError(
            f"no new full-resolution frame within {timeout:.0f} s (status: {_resolution(_status(self.browser))})\n"
            + (self.diagnostics() if self.diagnostics is not None else "")
        )


def _viewer_env(tmp_path: Path) -> dict:
    """ns-viewer's environment: unbuffered output, and SIGUSR1 prints every thread's stack to its log (a
    sitecustomize on PYTHONPATH registers it with faulthandler), so a viewer that stops rendering says where."""
    folder = tmp_path / "sitecustomize"
    folder.mkdir(exist_ok=True)
    (folder / "sitecustomize.py").write_text(
        "import faulthandler, signal\nfaulthandler.register(signal.SIGUSR1, all_threads=True)\n"
    )
    path = os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path}


def _diagnostics(viewer: subprocess.Popen, viewer_log: Path, browser: Chromium) -> str:
    """The ns-viewer log with every thread's stack, and the tail of Chromium's stderr."""
    if viewer.poll() is None:
        os.kill(viewer.pid, signal.SIGUSR1)
        time.sleep(2)
    chromium = Path(browser.log.name).read_text(errors="replace")[-2000:]
    return f"ns-viewer log:\n{viewer_log.read_text(errors='replace')[-8000:]}\nchromium stderr:\n{chromium}"


def _open_viewer_page(browser: Chromium, port: int) -> None:
    browser.call("Page.navigate", url=f"http://127.0.0.1:{port}")
    deadline = time.time() + 60
    while "Reset lighting" not in _status(browser):
        assert time.time() < deadline, "the viewer page did not show the NeuFace lighting panel: " + _status(browser)
        time.sleep(0.2)


def test_viewer_renders_the_face_and_the_lighting_panel_relights_it(tiny_checkpoint, tmp_path):
    executable = find_chromium()
    shots = Path(os.environ.get("NEUFACE_VIEWER_SHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = open(tmp_path / "ns-viewer.log", "w")
    viewer = subprocess.Popen(
        [str(BIN / "ns-viewer"), "--load-config", str(tiny_checkpoint),
         "--viewer.websocket-host", "127.0.0.1", "--viewer.websocket-port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=_viewer_env(tmp_path),
    )  # fmt: skip
    browser = None
    try:
        deadline = time.time() + 180
        while True:  # the page is served once the viewer is up
            assert viewer.poll() is None, (tmp_path / "ns-viewer.log").read_text()[-3000:]
            assert time.time() < deadline, "ns-viewer did not start: " + (tmp_path / "ns-viewer.log").read_text()[-3000:]
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}", timeout=2).read()
                break
            except OSError:
                time.sleep(0.5)

        browser = Chromium(executable)
        _open_viewer_page(browser, port)
        text = _status(browser)
        assert "NeuFace lighting" in text and "Light yaw (deg)" in text and "Specular" in text
        viewer_log = tmp_path / "ns-viewer.log"
        watcher = FrameWatcher(browser, lambda: _diagnostics(viewer, viewer_log, browser))
        everything = np.ones(watcher.canvas().shape[:2], dtype=bool)

        # 1. The first full-resolution frame shows the object against the empty (black) scene. The training
        #    cameras are hidden by the NeuFace start view, so what is seen is the model's render. It takes
        #    5-11 s here; once (CI, 2026-11-27) no frame came in 120 s and nothing was logged. A viewer that
        #    logged an error fails at once; otherwise the page is reloaded once (what a user would do) and the
        #    evidence (every ns-viewer thread's stack, Chromium's stderr) is kept in a warning.
        try:
            first, _, first_seconds = watcher.wait_for_new_frame(None, everything, timeout=60)
        except AssertionError as error:
            if "Traceback" in viewer_log.read_text(errors="replace"):
                raise
            warnings.warn(f"no first frame; the page is reloaded once. {error}")
            _open_viewer_page(browser, port)
            first, _, first_seconds = watcher.wait_for_new_frame(None, everything, timeout=120)
        Image.fromarray(browser.screenshot()).save(shots / "viewer_first_frame.png")
        assert "Show Train Cams" in _status(browser)
        corners = np.concatenate([first[:10, :10].reshape(-1, 3), first[-10:, -10:].reshape(-1, 3)])
        background = np.median(corners, axis=0)
        assert np.abs(background).max() < 30, f"unexpected empty-scene colour {background}"
        face = np.abs(first - background).max(-1) > 40
        assert face.mean() > 0.005, f"no object in the rendered frame ({face.mean():.4f} of the canvas differs)"
        rows, cols = np.nonzero(face)
        h, w = face.shape
        assert 0.1 * h < rows.mean() < 0.9 * h and 0.1 * w < cols.mean() < 0.9 * w, "the object is not in view"

        # 2. The output list is the model's, rgb first and selected.
        x, y, bw, bh = _element_box(browser, "Output type")
        browser.click(x + bw / 2, y + bh / 2)
        options = browser.js(
            "(() => { const l = [...document.querySelectorAll('label')].find(l => l.innerText.trim() === 'Output type');"
            " const input = document.getElementById(l.htmlFor);"
            " const list = document.getElementById(input.getAttribute('aria-controls'));"
            " return [input.value, list ? [...list.querySelectorAll('[role=option]')].map(o => o.innerText) : []]; })()"
        )
        browser.call("Input.dispatchKeyEvent", type="keyDown", key="Escape", code="Escape", windowsVirtualKeyCode=27)
        browser.call("Input.dispatchKeyEvent", type="keyUp", key="Escape", code="Escape", windowsVirtualKeyCode=27)
        assert options[0] == "rgb", options
        assert options[1][:8] == ["rgb", "albedo", "diffuse", "specular", "roughness", "normal", "depth", "accumulation"], options

        # 3. Change the light with real clicks on the panel: switch to the warm_side preset, rotate it (yaw slider
        #    at a quarter of its track, about -90 degrees), then dim it (intensity slider near its low end).
        _choose(browser, "Light", "warm_side")
        assert _dropdown_value(browser, "Light") == "warm_side"
        preset, preset_first, preset_settled = watcher.wait_for_new_frame(first, face, timeout=120, min_change=4.0)
        corner_change = np.abs(preset - first).mean(-1)
        assert max(corner_change[:40, :40].mean(), corner_change[-40:, -40:].mean()) < 2.0, "the empty scene changed"

        _click_slider(browser, "Light yaw (deg)", 0.25)
        yaw = _slider_value(browser, "Light yaw (deg)")
        assert -135 < yaw < -45, f"the click did not move the yaw slider (value {yaw})"
        rotated, yaw_first, yaw_settled = watcher.wait_for_new_frame(preset, face, timeout=120, min_change=4.0)
        Image.fromarray(browser.screenshot()).save(shots / "viewer_relit_frame.png")

        _click_slider(browser, "Light intensity", 0.1)
        intensity = _slider_value(browser, "Light intensity")
        assert 0 < intensity < 0.6, f"the click did not move the intensity slider (value {intensity})"
        dimmed, dim_first, dim_settled = watcher.wait_for_new_frame(rotated, face, timeout=120, min_change=4.0)
        assert dimmed[face].mean() < rotated[face].mean() - 4.0, "a lower light intensity did not darken the face"
        print(
            f"\nfirst frame {first_seconds:.1f} s after the panel appeared; control change -> first changed /"
            f" settled full-res frame: preset {preset_first:.2f} / {preset_settled:.2f} s,"
            f" yaw {yaw_first:.2f} / {yaw_settled:.2f} s, intensity {dim_first:.2f} / {dim_settled:.2f} s"
        )
    finally:
        if browser is not None:
            browser.close()
        stop(viewer)
        log.close()


def test_relight_script_writes_frames_and_videos_and_never_overwrites(tiny_checkpoint, tmp_path):
    script = Path(__file__).resolve().parents[1] / "scripts" / "relight.py"
    out = tmp_path / "relit"
    cmd = [
        sys.executable, str(script), "--load-config", str(tiny_checkpoint), "--light", "warm_side",
        "--output-dir", str(out), "--max-views", "1", "--light-frames", "3", "--downscale", "4",
        "--outputs", "rgb,diffuse", "--yaw", "30",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for folder, count in (("views", 1), ("rotating_light", 3)):
        for name in ("rgb", "diffuse"):
            frames = sorted((out / folder / name).glob("*.png"))
            assert len(frames) == count, (folder, name, frames)
            assert Image.open(frames[0]).size == (25, 18)  # the 200x150 sample at half size (fixture), then 1/4
    rotating = [np.asarray(Image.open(p), dtype=np.float32) for p in sorted((out / "rotating_light" / "rgb").glob("*.png"))]
    assert np.abs(rotating[1] - rotating[0]).mean() > 0.5, "the rotating light does not change the frames"
    settings = json.loads((out / "relight.json").read_text())
    assert settings["light"] == "warm_side" and settings["yaw"] == 30.0
    assert np.load(out / "light.npy").shape == (121, 3)
    if shutil.which("ffmpeg"):
        assert (out / "views_rgb.mp4").stat().st_size > 0 and (out / "rotating_light_diffuse.mp4").stat().st_size > 0
    else:
        assert "ffmpeg not found" in result.stdout

    # Never overwrite without --overwrite (and fail before loading anything).
    before = (out / "views" / "rgb" / "000.png").read_bytes()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert again.returncode == 2 and "--overwrite" in again.stderr
    assert (out / "views" / "rgb" / "000.png").read_bytes() == before
