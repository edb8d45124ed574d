"""Fixtures for the cam2drive integration tests.

  pki               session: CA + certificates (Pki.cert(cn) for any CN)
  broker            a real mosquitto with mTLS + ACL on a free loopback port
  media             sample recordings made with ffmpeg (cached, see Media)
  make_controller   Controller(...) factory (not started)
  make_agent        Agent(...) factory (not started)
  rtsp_server       factory: serve a file over rtsp:// (rtsp_server.py)

Every process a test starts is killed when the test ends. Each test has a
time limit (default 600 s, @pytest.mark.timeout(N) to change). Run one file
alone with: C2D_BUILD_DIR=build /usr/bin/python3 -m pytest -q tests/integration/test_01_upload.py
"""

import atexit
import fcntl
import os
import re
import shutil
import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from c2dtest import (  # noqa: E402
    PYTHON, Agent, Broker, Controller, Pki, Proc, TestTimeout, run, wait_for,
)

DEFAULT_TIMEOUT = 600


def _on_sigterm(signum, frame):
    # meson test's timeout sends SIGTERM to our process group, and our
    # children live in their own sessions: kill them before going.
    Proc.kill_all()
    os._exit(143)


def pytest_configure(config):
    config.addinivalue_line("markers", "timeout(seconds): per-test time limit")
    signal.signal(signal.SIGTERM, _on_sigterm)
    atexit.register(Proc.kill_all)


def _alarm(signum, frame):
    raise TestTimeout("test time limit reached")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    m = item.get_closest_marker("timeout")
    limit = int(m.args[0]) if m else DEFAULT_TIMEOUT
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(limit)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        Proc.kill_all()


@pytest.fixture(scope="session", autouse=True)
def _no_leftovers():
    yield
    Proc.kill_all()


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def broker(pki, tmp_path):
    b = Broker(pki, tmp_path / "broker")
    b.start()
    yield b
    b.kill9()


@pytest.fixture
def make_controller(broker, pki, tmp_path):
    made = []

    def make(name="controller", **overrides):
        c = Controller(tmp_path / name, broker, pki.cert("c2d-controller"), **overrides)
        made.append(c)
        return c

    yield make
    for c in made:
        if c.proc:
            c.proc.kill9()


@pytest.fixture
def make_agent(broker, pki, tmp_path):
    made = []

    def make(device, channels, name=None, **overrides):
        a = Agent(tmp_path / (name or "agent-" + device), broker, pki.cert(device), channels,
                  **overrides)
        made.append(a)
        return a

    yield make
    for a in made:
        if a.proc:
            a.proc.kill9()


# ---- media ----------------------------------------------------------------

MEDIA_VERSION = "v1"  # bump when the recipes below change

_VIDEO = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
          "-g", "50", "-keyint_min", "50", "-sc_threshold", "0",
          "-b:v", "200k", "-maxrate", "250k", "-bufsize", "500k"]


def _lavfi_video(pattern="testsrc2", seconds=120):
    return ["-f", "lavfi", "-i", "%s=size=320x240:rate=25:duration=%d" % (pattern, seconds)]


def _lavfi_sine(freq, rate, seconds):
    return ["-f", "lavfi", "-i", "sine=frequency=%d:sample_rate=%d:duration=%d" % (freq, rate, seconds)]


class Media:
    """Sample recordings (320x240, 25 fps, a keyframe every 2 s, so that
    segments cut at keyframes hold packets byte-identical to the source):

      h264_aac   120 s H.264 + AAC in MPEG-TS
      h265       120 s H.265 (libx265), no audio, MPEG-TS
      h264_g711   30 s H.264 + G.711 mu-law (pcm_mulaw) in Matroska
      h264_short  20 s H.264 + AAC in MPEG-TS (a different picture)
      dir        a directory of 3 x 10 s H.264 + AAC MPEG-TS files named by
                 time (cut from one 30 s recording: continuous timestamps)

    Made once and cached under $C2D_BUILD_DIR/tests/integration/media-v1
    (or a session temp dir)."""

    def __init__(self, d):
        self.dir = Path(d)
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.h264_aac = self._make("h264_aac.ts", _lavfi_video() + _lavfi_sine(440, 48000, 120)
                                       + _VIDEO + ["-c:a", "aac", "-b:a", "48k", "-ac", "1", "-f", "mpegts"])
            self.h265 = self._make("h265.ts", _lavfi_video("testsrc") + [
                "-c:v", "libx265", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
                "-x265-params", "keyint=50:min-keyint=50:scenecut=0:bitrate=200:log-level=error",
                "-an", "-f", "mpegts"])
            self.h264_g711 = self._make("h264_g711.mkv", _lavfi_video("smptebars", 30)
                                        + _lavfi_sine(300, 8000, 30)
                                        + _VIDEO + ["-c:a", "pcm_mulaw", "-ac", "1", "-f", "matroska"])
            self.h264_short = self._make("h264_short.ts", _lavfi_video("rgbtestsrc", 20)
                                         + _lavfi_sine(660, 48000, 20)
                                         + _VIDEO + ["-c:a", "aac", "-b:a", "48k", "-ac", "1", "-f", "mpegts"])
            self.dir_source = self._make_dir()

    def _make(self, name, args):
        out = self.dir / name
        if not out.exists():
            tmp = self.dir / ("tmp-" + name)
            run(["ffmpeg", "-nostdin", "-v", "error", "-y"] + args + [tmp], timeout=300)
            tmp.rename(out)
        return out

    def _make_dir(self):
        out = self.dir / "dir"
        if out.exists():
            return out
        whole = self._make("dir_whole.ts", _lavfi_video("testsrc2", 30) + _lavfi_sine(550, 48000, 30)
                           + _VIDEO + ["-c:a", "aac", "-b:a", "48k", "-ac", "1", "-f", "mpegts"])
        tmp = self.dir / "tmp-dir"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", whole, "-map", "0", "-c", "copy",
             "-f", "segment", "-segment_time", "10", "-segment_format", "mpegts",
             "-reset_timestamps", "0", tmp / "part%d.ts"], timeout=120)
        parts = sorted(tmp.glob("part*.ts"), key=lambda p: int(p.stem[4:]))
        assert len(parts) == 3, parts
        for i, p in enumerate(parts):
            p.rename(tmp / ("20251130T1000%02d.ts" % (10 * i)))
        tmp.rename(out)
        return out

    def dir_files(self):
        return sorted(self.dir_source.glob("*.ts"))


@pytest.fixture(scope="session")
def media(tmp_path_factory):
    base = os.environ.get("C2D_BUILD_DIR")
    if base and os.access(base, os.W_OK):
        d = Path(base) / "tests" / "integration" / ("media-" + MEDIA_VERSION)
    else:
        d = tmp_path_factory.mktemp("media")
    return Media(d)


# ---- RTSP -----------------------------------------------------------------

RTSP_SERVER = Path(__file__).resolve().parent / "rtsp_server.py"


@pytest.fixture
def rtsp_server(tmp_path):
    """rtsp_server(path) -> (url, Proc): serves path at rtsp://127.0.0.1:PORT/..."""

    def start(path, name="rtsp", extra=()):
        log = tmp_path / (name + ".log")
        p = Proc("rtsp_server", [PYTHON, RTSP_SERVER, str(path)] + list(extra), log)

        def url():
            if not p.alive():
                raise AssertionError("rtsp_server.py exited\n" + p.tail())
            m = re.search(r"^URL (rtsp://\S+)$", p.text(), re.M)
            return m and m.group(1)

        return wait_for(url, 30, "rtsp_server.py to print its URL", on_timeout=p.tail), p

    return start
