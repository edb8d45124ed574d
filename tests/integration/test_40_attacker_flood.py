"""40 (flood): one device floods, the others do not notice (issue 6,
"message floods from one device (rate limited without harming others)";
controller/devlimit.h, docs/security.md).

The production setup of test_40_attacker.py (c2d-ca init, its broker, a
controller with the API), the controller's per-device limit set low
(device_msgs_per_s 200, burst 400) so that one mosquitto_pub can go far
over it. rec-g uploads real video with a real c2d-agent alone (the
baseline); then rec-h uploads the same while rec-f floods its own seg topic
with thousands of small messages a second (`mosquitto_pub -l`). rec-h's
segments are all stored, its ack latency (an observer times each `end` to
its `committed` ack) stays within a generous bound of the baseline's, the
API answers during the flood, and the flooder's excess is dropped (its acks
come at the limit's rate), counted (GET /recorders/{id}/state
"rate_limited", the rate_limited alarm) and logged."""

import json
import subprocess
import threading
import time

import pytest

from c2dtest import (HOST, Agent, MqttClient, check_store_consistent, file_channel,
                     start_ca_broker, wait_for)
from test_30_pki import Pki
from test_31_pairing import Story

RATE, BURST = 200, 400
FLOOD_LINE = b'{"v":1,"t":"end","ch":0,"start":1}\n'


class Timer:
    """Observer (the controller's certificate) timing end -> committed per
    segment of a device."""

    def __init__(self, pki, dev):
        self.dev = dev
        self.ends, self.commits = {}, {}
        self.c = MqttClient(pki.as_broker(), pki.controller, "timer-" + dev,
                            subscribe=["c2d/v1/d/%s/seg" % dev, "c2d/v1/d/%s/ack" % dev])
        self.c.c.on_message = self._msg

    def _msg(self, client, userdata, msg):
        now = time.monotonic()
        if msg.payload[:1] != b"{":
            return
        m = json.loads(msg.payload)
        key = (m.get("ch"), m.get("start"))
        if msg.topic.endswith("/seg") and m.get("t") == "end":
            self.ends.setdefault(key, now)
        elif msg.topic.endswith("/ack") and m.get("status") == "committed":
            self.commits.setdefault(key, now)

    def latencies(self):
        return sorted(self.commits[k] - self.ends[k] for k in self.commits if k in self.ends)

    def close(self):
        self.c.close()


def upload(s, pki, media, dev, tmp_path):
    """A real agent for dev uploading media.h264_aac (120 s) as fast as it
    can; returns (its segments as stored, end->committed latencies)."""
    timer = Timer(pki, dev)
    try:
        a = Agent(tmp_path / ("agent-" + dev), pki.as_broker(), pki.device(dev),
                  [file_channel(1, media.h264_aac)], segment_seconds=4)
        a.start()
        a.wait_done(240, s.ctl)
        time.sleep(0.5)
    finally:
        timer.close()
    segs = [x for x in s.ctl.segments() if x["device"] == dev]
    assert len(segs) >= 25 and a.spool_files() == [], (len(segs), a.spool_files())
    assert set(a.kept()) == {(x["channel"], x["start_us"]) for x in segs}
    lat = timer.latencies()
    assert len(lat) == len(segs), (len(lat), len(segs))
    return segs, lat


class Flood:
    """mosquitto_pub -l as dev on its own seg topic, QoS 0, fed as fast as
    it reads; counts the lines sent."""

    def __init__(self, pki, dev):
        cert = pki.device(dev)
        self.p = subprocess.Popen(
            ["mosquitto_pub", "-h", HOST, "-p", str(pki.dev_port), "-V", "mqttv5", "-q", "0",
             "--cafile", str(pki.ca), "--cert", str(cert.crt), "--key", str(cert.key),
             "-i", "flood-" + dev, "-t", "c2d/v1/d/%s/seg" % dev, "-l"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.sent = 0
        self.stop = False
        self.t0 = time.monotonic()
        self.t = threading.Thread(target=self._run)
        self.t.start()

    def _run(self):
        block = FLOOD_LINE * 500
        try:
            while not self.stop:
                self.p.stdin.write(block)
                self.p.stdin.flush()
                self.sent += 500
        except (BrokenPipeError, ValueError):
            pass

    def close(self):
        self.stop = True
        self.t.join()
        self.elapsed = time.monotonic() - self.t0
        self.p.terminate()  # what it has read but not sent yet is not wanted
        self.p.wait(30)
        try:
            self.p.stdin.close()
        except BrokenPipeError:
            pass


@pytest.mark.timeout(600)
def test_flood_from_one_device(tmp_path, media):
    pki = Pki(tmp_path / "ca")
    broker = start_ca_broker(pki.dir, [pki.dev_port, pki.pair_port], tmp_path / "mosquitto.log")
    s = Story(pki, tmp_path, device_msgs_per_s=RATE, device_msgs_burst=BURST)
    site = s.rec["site_id"]
    rec = {}
    for dev in ("rec-f", "rec-g", "rec-h"):
        rec[dev] = s.ok("POST", "/api/v1/recorders", {"name": dev, "serial": "SN-" + dev,
                                                      "model": "X8", "site_id": site,
                                                      "channels": 2, "device_id": dev})

    # the baseline: rec-g alone
    base_segs, base = upload(s, pki, media, "rec-g", tmp_path)

    # rec-h while rec-f floods; the flooder reads its own acks
    acks = MqttClient(pki.as_broker(), pki.device("rec-f"), "rec-f-acks",
                      subscribe=["c2d/v1/d/rec-f/ack"])
    flood = Flood(pki, "rec-f")
    api_times = []
    try:
        wait_for(lambda: flood.sent > 20000, 30, "the flood to start")

        def api_poll():
            while not flood.stop:
                t = time.monotonic()
                s.ok("GET", "/api/v1/recorders/%d/state" % rec["rec-f"]["id"])
                api_times.append(time.monotonic() - t)
                time.sleep(0.2)

        poller = threading.Thread(target=api_poll)
        poller.start()
        segs, lat = upload(s, pki, media, "rec-h", tmp_path)
        time.sleep(2)  # the flood goes on a little after the upload
    finally:
        flood.close()
        poller.join()
        time.sleep(1)
        acks.close()
    assert broker.alive() and s.ctl.alive(), s.ctl.diag()
    got = len(acks.all)
    st = s.ok("GET", "/api/v1/recorders/%d/state" % rec["rec-f"]["id"])
    lim = st["rate_limited"]
    assert lim, st
    rate = (lim["dropped_messages"] + got) / flood.elapsed  # what reached the controller
    print("flood: %d lines written, %.0f messages/s reached the controller in %.1f s; %d answered; rec-h latency max %.3f s "
          "(baseline %.3f s), p50 %.3f (%.3f); API max %.3f s over %d calls"
          % (flood.sent, rate, flood.elapsed, got, lat[-1], base[-1], lat[len(lat) // 2],
             base[len(base) // 2], max(api_times), len(api_times)))
    assert rate > 5 * RATE, "the flood was too slow to test anything: %.0f/s" % rate

    # the flooder: answered at most at the limit's rate (the rest dropped)
    assert got <= BURST + RATE * (flood.elapsed + 2) * 1.1, (got, flood.elapsed)
    assert got >= RATE, got  # and not cut off either
    assert lim["dropped_messages"] > 4 * got, (lim, got)
    assert lim["dropped_bytes"] == lim["dropped_messages"] * (len(FLOOD_LINE) - 1), lim
    assert [a["code"] for a in st["alarms"]] == ["rate_limited"], st["alarms"]
    alarms = s.ok("GET", "/api/v1/alarms")["items"]
    assert [a["recorder_id"] for a in alarms if a["code"] == "rate_limited"] == [
        rec["rec-f"]["id"]], alarms  # (rec-g and rec-h: offline, their agents ended)
    log = s.ctl.log_text()
    lines = log.count("device rec-f: ")
    assert "device rec-f: " in log and "dropped over its rate limit" in log, s.ctl.diag()
    assert lines < 20, "%d log lines about the flooder" % lines
    # the others: not limited, all stored, latency bounded
    for dev in ("rec-g", "rec-h"):
        st = s.ok("GET", "/api/v1/recorders/%d/state" % rec[dev]["id"])
        assert st["rate_limited"] is None and "rate_limited" not in str(st["alarms"]), st
    assert len(segs) == len(base_segs)
    assert lat[-1] < max(5 * base[-1], base[-1] + 2.0), (lat, base)
    assert max(api_times) < 2.0, api_times
    check_store_consistent(s.ctl)


@pytest.mark.timeout(600)
def test_compliant_catch_up_is_not_limited(tmp_path):
    """The limit's defaults are a backstop against floods, never a shaper of
    a compliant recorder: an agent catching up on a backlog as fast as
    loopback carries it (4 channels of a 134 Mbit/s recording, read as fast
    as it can: about 270 MB) loses no message to the limit, so it never
    waits out an ack timeout. (With last release's 32 MiB/s default, the
    same upload lost chunks and ran at 8 MB/s instead of over 100.)"""
    src = tmp_path / "noise.ts"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=640x480:rate=25:duration=4,noise=alls=100:allf=t",
                    "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-g", "50",
                    "-keyint_min", "50", "-sc_threshold", "0", "-pix_fmt", "yuv420p",
                    "-f", "mpegts", str(src)], check=True, timeout=120)
    size = src.stat().st_size
    assert size > 40e6, size  # far over the old 64 MiB burst with 4 channels
    pki = Pki(tmp_path / "ca")
    broker = start_ca_broker(pki.dir, [pki.dev_port, pki.pair_port], tmp_path / "mosquitto.log")
    s = Story(pki, tmp_path)  # the controller's default limits
    rec = s.ok("POST", "/api/v1/recorders", {"name": "rec-c", "serial": "SN-rec-c", "model": "X8",
                                             "site_id": s.rec["site_id"], "channels": 4,
                                             "device_id": "rec-c"})
    a = Agent(tmp_path / "agent-rec-c", pki.as_broker(), pki.device("rec-c"),
              [file_channel(ch, src) for ch in (1, 2, 3, 4)], segment_seconds=2)
    t0 = time.monotonic()
    a.start()
    a.wait_done(300, s.ctl)
    took = time.monotonic() - t0
    segs = [x for x in s.ctl.segments() if x["device"] == "rec-c"]
    stored = sum(x["size"] for x in segs)
    print("catch-up: %d segments, %.0f MB in %.1f s (%.1f MB/s, segmenting included)"
          % (len(segs), stored / 1e6, took, stored / 1e6 / took))
    assert broker.alive() and s.ctl.alive(), s.ctl.diag()
    assert len(segs) >= 8 and a.spool_files() == [], (len(segs), a.spool_files())
    assert stored >= 4 * size * 0.95, (stored, size)
    log = s.ctl.log_text()
    assert "over its rate limit" not in log and "resume device=rec-c" not in log, s.ctl.diag()
    st = s.ok("GET", "/api/v1/recorders/%d/state" % rec["id"])
    assert st["rate_limited"] is None and "rate_limited" not in str(st["alarms"]), st
    check_store_consistent(s.ctl)
