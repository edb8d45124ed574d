"""22: virtual disks end to end (issue 4, "What must be shown" 1).

A real controller (open_mode off: only segments of an active disk are
stored), a real broker and a real c2d-agent. The distributor (c2d-controller
init) creates an installer and a virtual disk for the installer's client;
the installer configures the disk in the guide's steps and activates it
(docs/api.md, "Subscriptions: virtual disks and AI"). Then:
- overwrite: the oldest segments make room, exactly those; usage is exact
  (disk = sum of cameras = sum of the store's files); evicted files go;
- stop: segments beyond the capacity are refused (quota_full) and wait in
  the agent's spool; the distributor raises the capacity, the device config
  is republished, the agent retries at once and they arrive;
- retention: segments past the disk's retention are swept, never served;
- bookmarks protect what they cover, within half the capacity;
- cloud backup off for a channel: refused (backup_off), and once the
  retained config arrives the agent stops sending that channel;
- installers cannot create subscriptions;
- no active disk: refused (no_disk) and kept; activation lets them in.

Segments from a file source are stamped from the wall clock when the agent
starts (agent/channel.c), so the retention test publishes old segments
itself with the device's certificate (proto/README.md, the upload
exchange)."""

import json
import re
import time
from pathlib import Path

import pytest

from apiclient import Api, err, start_api
from c2dtest import (
    MqttClient, ack_topic, begin_msg, check_store_consistent, chunk_frame, end_msg, file_channel,
    free_port, port_open, run, seg_topic, sha256_file, wait_for,
)

DIST = "dist@example.com"
DIST_PW = "distributor password"
PW = "installer password"
MIB = 1 << 20
DAY_US = 86400 * 10**6


def outbox_link(ctl, email, timeout=10):
    """The token of the newest set-password link mailed to email."""
    box = Path(ctl.data_dir / "outbox")
    deadline = time.monotonic() + timeout
    while True:
        found = []
        for f in sorted(box.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns) if box.exists() else []:
            txt = f.read_text(errors="replace")
            if re.search(r"^To:.*%s" % re.escape(email), txt, re.M | re.I):
                m = re.search(r"set-password\?token=([A-Za-z0-9_-]+)", txt)
                if m:
                    found.append(m.group(1))
        if found:
            return found[-1]
        assert time.monotonic() < deadline, "no set-password link for %s" % email
        time.sleep(0.1)


class Space:
    """A controller with the API, its distributor and one installer with a
    client and a site: what every test here starts from."""

    def __init__(self, make_controller, **overrides):
        cfg = {"open_mode": False, "sweep_interval_s": 1}
        cfg.update(overrides)
        self.port = free_port()
        self.ctl = start_api(make_controller, http={"port": self.port}, **cfg)
        self.ctl.init(DIST, DIST_PW)
        self.ctl.start()
        self.wait_http()
        self.api = Api(self.port)
        self.api.ctl = self.ctl
        self.dist = self.api.token(DIST, DIST_PW)
        email = "installer@example.com"
        self.inst = self.api.ok("POST", "/api/v1/installers", {"name": "Installer", "email": email},
                                token=self.dist)
        self.api.ok("POST", "/api/v1/set-password",
                    {"token": outbox_link(self.ctl, email), "password": PW})
        self.tok = self.api.token(email, PW)
        self.client = self.ok("POST", "/api/v1/clients",
                              {"name": "Client", "email": "client@example.com"})
        self.site = self.ok("POST", "/api/v1/sites", {"name": "Site", "client_id": self.client["id"]})

    def wait_http(self, timeout=20):
        wait_for(lambda: port_open(self.port) or not self.ctl.alive(), timeout,
                 "the controller's API on port %d" % self.port, on_timeout=self.ctl.diag)
        assert self.ctl.alive(), "controller exited\n" + self.ctl.diag()

    def ok(self, method, path, body=None, want=(200, 201, 204)):
        """A request of the installer's administrator that must succeed."""
        return self.api.ok(method, path, body, token=self.tok, want=want)

    def recorder(self, dev, nch):
        """A recorder of the client for device dev: (recorder, {number: channel})."""
        rec = self.ok("POST", "/api/v1/recorders",
                      {"name": "NVR " + dev, "serial": "SN-" + dev, "model": "X8",
                       "site_id": self.site["id"], "channels": nch, "device_id": dev})
        chans = {c["number"]: c for c in
                 self.ok("GET", "/api/v1/channels?recorder_id=%d" % rec["id"])["items"]}
        assert sorted(chans) == list(range(1, nch + 1)), chans
        return rec, chans

    def vdisk(self, capacity, policy="overwrite", retention_days=3650):
        """The distributor sells a disk to the client: pending."""
        vd = self.api.ok("POST", "/api/v1/installers/%d/vdisks" % self.inst["id"],
                         {"client_id": self.client["id"], "capacity_bytes": capacity,
                          "retention_days": retention_days, "policy": policy}, token=self.dist)
        assert vd["state"] == "pending", vd
        return vd

    def configure(self, vd, rec, chans, dev, backup=None, caps=None, activate=True):
        """The installer's steps 1-4 and (if activate) 5. backup: {number:
        bool} (default all on); caps: {number: bytes}."""
        backup = backup or {}
        caps = caps or {}
        i = vd["id"]
        self.ok("PUT", "/api/v1/vdisks/%d/device" % i, {"recorder_id": rec["id"]})
        self.ok("PUT", "/api/v1/vdisks/%d/drive" % i,
                {"name": "Disk " + dev, "retention_days": vd["retention_days"],
                 "policy": vd["policy"],
                 "camera_caps": [{"channel_id": chans[n]["id"], "cap_bytes": b}
                                 for n, b in sorted(caps.items())]})
        self.ok("PUT", "/api/v1/vdisks/%d/channels" % i,
                {"channels": [{"channel_id": c["id"], "name": "Cam %d" % n,
                               "cloud_backup": backup.get(n, True)} for n, c in sorted(chans.items())]})
        self.ok("PUT", "/api/v1/vdisks/%d/connection" % i, {"device_id": dev})
        steps = self.ok("GET", "/api/v1/vdisks/%d/steps" % i)
        assert steps["ready"] is True and steps["missing"] is None, steps
        if activate:
            return self.activate(vd)
        return self.ok("GET", "/api/v1/vdisks/%d" % i)

    def activate(self, vd):
        out = self.ok("POST", "/api/v1/vdisks/%d/activate" % vd["id"])
        assert out["state"] == "active", out
        return out

    def disk(self, vd):
        return self.ok("GET", "/api/v1/vdisks/%d" % vd["id"])

    def resize(self, vd, **fields):
        return self.api.ok("PUT", "/api/v1/installers/%d/vdisks/%d" % (self.inst["id"], vd["id"]),
                           fields, token=self.dist)


def check_disk_exact(sp, vd, dev, capacity_bound=True):
    """The details view agrees with the ledger and the store: used_bytes =
    sum of cameras[].bytes = sum of the sizes of dev's files in the store;
    segments likewise; used <= capacity (if capacity_bound). Returns (disk,
    segments of dev)."""
    d = sp.disk(vd)
    segs = [s for s in sp.ctl.segments() if s["device"] == dev]
    u = d["usage"]
    cams = d["cameras"]
    files = [f for f in (sp.ctl.data_dir / "store" / dev).rglob("*") if f.is_file()] \
        if (sp.ctl.data_dir / "store" / dev).exists() else []
    assert u["used_bytes"] == sum(c["bytes"] for c in cams), d
    assert u["segments"] == sum(c["segments"] for c in cams), d
    assert u["used_bytes"] == sum(f.stat().st_size for f in files), (
        "used_bytes %d, files of %s in the store %d (%d files)"
        % (u["used_bytes"], dev, sum(f.stat().st_size for f in files), len(files)))
    assert u["used_bytes"] == sum(s["size"] for s in segs), (u, len(segs))
    assert u["segments"] == len(segs) == len(files), (u["segments"], len(segs), len(files))
    if capacity_bound:
        assert u["used_bytes"] <= d["capacity_bytes"], d
    assert u["free_bytes"] == max(0, d["capacity_bytes"] - u["used_bytes"]), d
    for c in cams:
        mine = [s for s in segs if s["channel"] == c["channel"]]
        assert c["device_id"] == dev and c["bytes"] == sum(s["size"] for s in mine) and \
            c["segments"] == len(mine), (c, len(mine))
    return d, segs


def store_settled(ctl):
    """check_store_consistent once the janitor has deleted evicted files."""
    def ok():
        try:
            check_store_consistent(ctl)
            return True
        except AssertionError as e:
            ok.last = str(e)
            return False
    ok.last = ""
    wait_for(ok, 15, "the store to match the ledger", on_timeout=lambda: ok.last)


def kept_sorted(agent):
    """[(start, ch, path)] of the agent's committed segments, oldest first."""
    return sorted((s, ch, p) for (ch, s), p in agent.kept().items())


def status_file(agent):
    try:
        return json.loads((agent.state_dir / "status.json").read_text())
    except (OSError, ValueError):
        return None


def chan_status(st, ch):
    return next(c for c in st["channels"] if c["id"] == ch)


def check_oldest_evicted(stored, made, capacity):
    """stored and made: [(start, ch, size)] sorted by start. The stored
    segments are the newest of those made (a suffix), and the newest evicted
    one would not have fit beside them."""
    assert stored, "nothing stored"
    n = len(stored)
    assert [(s, c) for s, c, _ in made[-n:]] == [(s, c) for s, c, _ in stored], (
        "stored is not the newest %d of the segments made:\nstored %s\nmade %s"
        % (n, stored, made))
    used = sum(x[2] for x in stored)
    assert used <= capacity
    if len(made) > n:
        evicted = made[-n - 1]
        assert used + evicted[2] > capacity, (
            "segment %s was evicted though it fits beside the %d stored (%d + %d <= %d)"
            % (evicted, n, used, evicted[2], capacity))


def agent_log_starts(agent, what):
    """{(ch, start)} of the agent's log lines 'segment <what> ch=C start=S'."""
    return {(int(c), int(s)) for c, s in
            re.findall(r"segment %s ch=(\d+) start=(\d+)" % what, agent.proc.text())}


# ---- the tests ----------------------------------------------------------------


@pytest.mark.timeout(150)
def test_overwrite_evicts_oldest(make_controller, make_agent, media):
    dev = "rec-ow"
    sp = Space(make_controller)
    rec, chans = sp.recorder(dev, 1)
    cap = 1 * MIB  # about three 10 s segments of the sample
    vd = sp.configure(sp.vdisk(cap), rec, chans, dev)
    agent = make_agent(dev, [file_channel(1, media.h264_aac)])
    agent.start()
    agent.wait_done(120, sp.ctl)

    made = [(s, ch, p.stat().st_size) for s, ch, p in kept_sorted(agent)]
    assert len(made) >= 10 and sum(x[2] for x in made) > 3 * cap, made
    store_settled(sp.ctl)
    d, segs = check_disk_exact(sp, vd, dev)
    stored = [(s["start_us"], s["channel"], s["size"]) for s in segs]
    check_oldest_evicted(stored, made, cap)
    assert len(stored) < len(made)
    # The stored ones are the agent's bytes; evicted files are gone.
    kept = agent.kept()
    for s in segs:
        assert s["sha256"] == sha256_file(kept[(s["channel"], s["start_us"])])
    for start, ch, _ in made[:len(made) - len(stored)]:
        assert not (sp.ctl.data_dir / "store" / dev / str(ch) / ("%d.ts" % start)).exists()
    assert d["usage"]["protected_bytes"] == 0
    assert "oldest" in d["usage"] and d["usage"]["segments"] == len(stored)
    assert agent.spool_files() == []


def stop_full(make_controller, make_agent, media):
    """A stop disk of 1 MiB filled by an agent: the segments beyond it are
    refused (quota_full) and wait in the agent's spool, the agent waits."""
    dev = "rec-st"
    sp = Space(make_controller)
    rec, chans = sp.recorder(dev, 1)
    cap = 1 * MIB
    vd = sp.configure(sp.vdisk(cap, policy="stop"), rec, chans, dev)
    agent = make_agent(dev, [file_channel(1, media.h264_aac)])
    agent.start()

    # The disk fills; the rest are refused and wait in the spool.
    def held():
        st = status_file(agent)
        return st and chan_status(st, 1)["upload"]["state"] == "quota_full" and st
    wait_for(held, 60, "the agent's channel 1 held by quota_full", on_timeout=agent.proc.tail)
    # every segment of the source made (12 x 10 s) and the refused ones in the spool
    wait_for(lambda: len(agent.kept()) + len(agent.spool_files()) >= 12, 60,
             "the whole source segmented", on_timeout=agent.proc.tail)
    time.sleep(1)
    d, segs = check_disk_exact(sp, vd, dev)
    committed = agent.kept()
    assert len(segs) == len(committed) >= 2, (len(segs), len(committed))
    spooled = agent.spool_files()
    assert spooled, "nothing waits in the spool"
    assert d["usage"]["used_bytes"] + min(f.stat().st_size for f in spooled) > cap
    assert d["usage"]["used_bytes"] <= cap
    refused = agent_log_starts(agent, "rejected")
    assert refused and all(re.search(r"segment rejected ch=1 start=%d reason=quota_full" % s,
                                     agent.proc.text()) for _, s in refused), agent.proc.tail()
    assert "reason quota_full" in sp.ctl.log_text()
    assert agent.proc.alive(), "the agent gave up on held segments"
    return sp, vd, dev, agent, committed, spooled


@pytest.mark.timeout(120)
def test_stop_refuses(make_controller, make_agent, media):
    sp, vd, dev, agent, committed, spooled = stop_full(make_controller, make_agent, media)
    # Nothing moves while the disk is full (the agent's next try is 30 s away).
    time.sleep(2)
    assert agent.kept() == committed and sorted(agent.spool_files()) == sorted(spooled)
    check_disk_exact(sp, vd, dev)


# Regression: a distributor's resize once lost the disk's cameras
# (vdisk_sync looked the recorder up in the caller's space).
@pytest.mark.timeout(120)
def test_stop_capacity_raised(make_controller, make_agent, media):
    sp, vd, dev, agent, committed, spooled = stop_full(make_controller, make_agent, media)
    biggest = max(f.stat().st_size for f in spooled)
    # The distributor raises the capacity: the agent retries at once.
    total = sum(p.stat().st_size for p in committed.values()) + sum(f.stat().st_size
                                                                    for f in spooled)
    t0 = time.monotonic()
    sp.resize(vd, capacity_bytes=total + biggest + MIB)
    agent.wait_done(30, sp.ctl)
    assert time.monotonic() - t0 < 25, "the agent waited for its backoff, not the new config"
    assert agent.spool_files() == []
    store_settled(sp.ctl)
    d, segs = check_disk_exact(sp, vd, dev)
    kept = agent.kept()
    assert sorted((s["channel"], s["start_us"]) for s in segs) == sorted(kept)
    assert d["usage"]["used_bytes"] == total
    for s in segs:
        assert s["sha256"] == sha256_file(kept[(s["channel"], s["start_us"])])


def raw_upload(broker, pki, dev, ch, start, data, dur=10_000_000, timeout=20):
    """Uploads one segment as device dev speaks (begin, chunks, end) and
    returns the last ack (a dict): committed, duplicate or rejected."""
    cl = MqttClient(broker, pki.cert(dev), "raw-%s-%d" % (dev, time.monotonic_ns()),
                    subscribe=[ack_topic(dev)])
    try:
        def answer(final):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                m = cl.get(0.5)
                if not m:
                    continue
                a = json.loads(m[1])
                if a.get("ch") == ch and a.get("start") == start and (
                        not final or a["status"] != "offset"):
                    return a
            raise AssertionError("no ack for ch %d start %d" % (ch, start))
        cl.publish(seg_topic(dev), begin_msg(ch, start, data, dur=dur))
        a = answer(False)
        if a["status"] != "offset":
            return a
        off = a["offset"]
        while off < len(data):
            piece = data[off:off + 65536]
            cl.publish(seg_topic(dev), chunk_frame(ch, start, off, piece))
            off += len(piece)
        cl.publish(seg_topic(dev), end_msg(ch, start))
        return answer(True)
    finally:
        cl.close()


def bookmark_on(channel_id, seg, name, second_half=False):
    """A bookmark body covering the first (or second) half of segment seg
    only: no doubt which segments it covers."""
    half = seg["duration_us"] // 2
    start = seg["start_us"] + (half if second_half else 0)
    return {"channel_id": channel_id, "name": name, "start": iso(start),
            "end": iso(start + half - 1000)}


def iso(us):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(us // 1_000_000)) + (
        ".%06dZ" % (us % 1_000_000))


@pytest.mark.timeout(120)
def test_retention_sweeps(make_controller, broker, pki, media):
    dev = "rec-rt"
    sp = Space(make_controller)
    rec, chans = sp.recorder(dev, 1)
    vd = sp.configure(sp.vdisk(8 * MIB, retention_days=1), rec, chans, dev)
    data = media.h264_short.read_bytes()[:188 * 1500]
    now = int(time.time() * 1e6)
    old = [now - 3 * DAY_US, now - 2 * DAY_US, now - DAY_US - 60 * 10**6]
    fresh = now - 60 * 10**6
    acks = {}
    for i, start in enumerate(old + [fresh]):
        d = data[i * 188:]  # different bytes for each
        acks[start] = raw_upload(sp.ctl.broker, pki, dev, 1, start, d)
    # Past retention: refused at once or stored and swept; never kept.
    assert acks[fresh]["status"] == "committed", acks[fresh]
    for start in old:
        assert acks[start]["status"] in ("committed", "rejected"), acks[start]

    def swept():
        segs = [s for s in sp.ctl.segments() if s["device"] == dev]
        return [s["start_us"] for s in segs] == [fresh] and segs
    wait_for(swept, 10, "the sweep to remove the old segments",
             on_timeout=lambda: "%s\n%s" % (sp.ctl.segments(), sp.ctl.diag()))
    store_settled(sp.ctl)
    for start in old:
        assert not (sp.ctl.data_dir / "store" / dev / "1" / ("%d.ts" % start)).exists()
    d, segs = check_disk_exact(sp, vd, dev)
    assert d["usage"]["segments"] == 1
    # Never served: the list over the whole span holds only the fresh one,
    # and an old segment does not download.
    ch = chans[1]["id"]
    q = "?from=%s&to=%s" % (iso(old[0] - 10**6), iso(now + 10**6))
    out = sp.ok("GET", "/api/v1/channels/%d/recordings%s" % (ch, q))
    assert [i["start_us"] for i in out["items"]] == [fresh], out
    for start in old:
        st, body, _ = sp.api.req("GET", "/api/v1/channels/%d/segments/%d" % (ch, start),
                                 token=sp.tok)
        assert st == 404, (st, body)


@pytest.mark.timeout(200)
def test_bookmarks_protect(make_controller, make_agent, media, tmp_path):
    dev = "rec-bm"
    # 20 s of the busier sample: two segments that each fit in half the
    # disk but not both.
    clip = tmp_path / "clip20.ts"
    run(["ffmpeg", "-nostdin", "-v", "error", "-i", media.h264_aac, "-t", "20", "-map", "0",
         "-c", "copy", "-f", "mpegts", clip])
    sp = Space(make_controller)
    rec, chans = sp.recorder(dev, 1)
    cap = 1 * MIB
    vd = sp.configure(sp.vdisk(cap), rec, chans, dev)
    ch = chans[1]["id"]

    a1 = make_agent(dev, [file_channel(1, clip)], name="agent-1")
    a1.start()
    a1.wait_done(60, sp.ctl)
    first = sp.ctl.segments()
    assert len(first) == 2, first
    s0, s1 = first
    # A bookmark on the second segment protects it. (Bookmarks here cover
    # the second half of a segment: test_bookmark_first_segment says why.)
    bm = sp.ok("POST", "/api/v1/bookmarks", bookmark_on(ch, s1, "Keep", second_half=True))
    assert sp.disk(vd)["usage"]["protected_bytes"] == s1["size"]
    # A second one would protect more than half the disk.
    assert s0["size"] + s1["size"] > cap // 2
    st, body, _ = sp.api.req("POST", "/api/v1/bookmarks",
                             bookmark_on(ch, s0, "Too much", second_half=True), token=sp.tok)
    assert st == 409 and err(body) == "protection_limit", (st, body)
    assert sp.disk(vd)["usage"]["protected_bytes"] == s1["size"]

    # More uploads: everything else is evicted oldest first, s1 stays.
    a2 = make_agent(dev, [file_channel(1, media.h264_aac)], name="agent-2")
    a2.start()
    a2.wait_done(120, sp.ctl)
    store_settled(sp.ctl)
    d, segs = check_disk_exact(sp, vd, dev)
    assert segs[0]["start_us"] == s1["start_us"] and segs[0]["sha256"] == s1["sha256"], segs[:2]
    assert s0["start_us"] not in {s["start_us"] for s in segs}, "s0 was not evicted"
    made = [(s, c, p.stat().st_size) for s, c, p in kept_sorted(a2)]
    rest = [(s["start_us"], s["channel"], s["size"]) for s in segs[1:]]
    check_oldest_evicted(rest, made, cap - s1["size"])
    assert d["usage"]["protected_bytes"] == s1["size"]

    # The bookmark goes: s1 is the oldest, evicted by the next upload. (A
    # file source is stamped from the wall clock at the agent's start: the
    # next upload starts after s1's start so that its segments are newer.)
    sp.ok("DELETE", "/api/v1/bookmarks/%d" % bm["id"])
    assert sp.disk(vd)["usage"]["protected_bytes"] == 0
    wait_for(lambda: time.time() * 1e6 > s1["start_us"] + 10**6, 30, "s1's start to pass")
    a3 = make_agent(dev, [file_channel(1, media.h264_short)], name="agent-3")
    a3.start()
    a3.wait_done(60, sp.ctl)
    store_settled(sp.ctl)
    d, segs = check_disk_exact(sp, vd, dev)
    assert s1["start_us"] not in {s["start_us"] for s in segs}, "s1 still stored: %s" % segs
    new = sorted((ch, st) for st, ch, _ in kept_sorted(a3))
    assert new and all(k in {(s["channel"], s["start_us"]) for s in segs} for k in new), segs
    assert not (sp.ctl.data_dir / s1["path"]).exists()


# Regression: a bookmark on the very first record of the segments
# database once protected nothing (the walk stepped back past the start).
@pytest.mark.timeout(120)
def test_bookmark_first_segment(make_controller, make_agent, media):
    dev = "rec-b1"
    sp = Space(make_controller)
    rec, chans = sp.recorder(dev, 1)
    vd = sp.configure(sp.vdisk(1 * MIB), rec, chans, dev)
    a1 = make_agent(dev, [file_channel(1, media.h264_short)])
    a1.start()
    a1.wait_done(60, sp.ctl)
    s0 = sp.ctl.segments()[0]
    sp.ok("POST", "/api/v1/bookmarks", bookmark_on(chans[1]["id"], s0, "First"))
    assert sp.disk(vd)["usage"]["protected_bytes"] == s0["size"]


@pytest.mark.timeout(150)
def test_backup_off_channel(make_controller, make_agent, media, pki):
    dev = "rec-bo"
    sp = Space(make_controller)
    rec, chans = sp.recorder(dev, 2)
    vd = sp.configure(sp.vdisk(64 * MIB), rec, chans, dev)
    spy = MqttClient(sp.ctl.broker, pki.cert("c2d-controller"), "spy-bo",
                     subscribe=[seg_topic(dev), ack_topic(dev)])
    agent = make_agent(dev, [file_channel(1, media.h264_short, realtime=True, loop=True),
                             file_channel(2, media.h264_short, realtime=True, loop=True)],
                       segment_seconds=2)
    agent.start(exit_when_done=False)

    def stored(n):
        return [s for s in sp.ctl.segments() if s["channel"] == n]
    wait_for(lambda: len(stored(1)) >= 2 and len(stored(2)) >= 2, 40, "both channels stored",
             on_timeout=agent.proc.tail)
    st0 = status_file(agent)
    v0 = st0.get("cfg_version")

    # Step 3: channel 2's backup off.
    sp.ok("PUT", "/api/v1/vdisks/%d/channels" % vd["id"],
          {"channels": [{"channel_id": chans[2]["id"], "cloud_backup": False}]})

    def applied():
        st = status_file(agent)
        return st and st.get("cfg_version") != v0 and chan_status(st, 2)["backup"] is False and st
    wait_for(applied, 20, "the agent to apply the new config", on_timeout=agent.proc.tail)
    # What the spy sees from a second after the config arrived on.
    time.sleep(1.0)
    since = len(spy.all)
    n2 = len(stored(2))
    # The controller refuses channel 2 itself (a begin sent as the device).
    start = int(time.time() * 1e6) + 3600 * 10**6
    a = raw_upload(sp.ctl.broker, pki, dev, 2, start, b"\x47" * 188 * 10)
    assert a["status"] == "rejected" and a["reason"] == "backup_off", a
    assert re.search(r"rejected device %s ch 2 start %d reason backup_off" % (dev, start),
                     sp.ctl.log_text()), sp.ctl.diag()

    # The agent sends channel 1 only, and counts channel 2's drops.
    def dropped():
        st = status_file(agent)
        return st and chan_status(st, 2)["upload"]["dropped_backup_off"] >= 3 and st
    st = wait_for(dropped, 30, "channel 2 segments dropped", on_timeout=agent.proc.tail)
    assert chan_status(st, 2)["upload"]["state"] == "backup_off", chan_status(st, 2)
    n1 = len(stored(1))
    wait_for(lambda: len(stored(1)) > n1, 15, "channel 1 still uploading",
             on_timeout=agent.proc.tail)
    late = []
    for topic, payload in list(spy.all)[since:]:
        if topic == seg_topic(dev) and payload[:1] == b"{":
            m = json.loads(payload)
            if m.get("t") == "begin" and m["ch"] == 2 and m["start"] != start:
                late.append(m)
    assert late == [], "channel 2 begins after its backup went off: %s" % late
    assert len(stored(2)) == n2, "channel 2 segments stored after backup off"
    assert "cloud backup is off" in agent.proc.text()
    agent.stop()
    spy.close()
    store_settled(sp.ctl)
    check_disk_exact(sp, vd, dev)


@pytest.mark.timeout(120)
def test_installers_cannot_subscribe(make_controller):
    sp = Space(make_controller)
    body = {"client_id": sp.client["id"], "capacity_bytes": 8 * MIB, "retention_days": 30}
    st, out, _ = sp.api.req("POST", "/api/v1/installers/%d/vdisks" % sp.inst["id"], body,
                            token=sp.tok)
    assert st == 403, (st, out)
    st, out, _ = sp.api.req("POST", "/api/v1/installers", {"name": "Mine", "email": "m@example.com"},
                            token=sp.tok)
    assert st == 403, (st, out)
    st, out, _ = sp.api.req("GET", "/api/v1/installers", token=sp.tok)
    assert st == 403, (st, out)
    vd = sp.vdisk(8 * MIB)
    st, out, _ = sp.api.req("PUT", "/api/v1/installers/%d/vdisks/%d" % (sp.inst["id"], vd["id"]),
                            {"capacity_bytes": 16 * MIB}, token=sp.tok)
    assert st == 403, (st, out)
    st, out, _ = sp.api.req("DELETE", "/api/v1/installers/%d/vdisks/%d" % (sp.inst["id"], vd["id"]),
                            token=sp.tok)
    assert st == 403, (st, out)
    # The installer reads the disk the distributor made and nothing changed.
    got = sp.disk(vd)
    assert got["capacity_bytes"] == 8 * MIB and got["state"] == "pending", got
    assert [v["id"] for v in sp.ok("GET", "/api/v1/vdisks")["items"]] == [vd["id"]]


@pytest.mark.timeout(150)
def test_no_disk_then_activated(make_controller, make_agent, media):
    dev = "rec-nd"
    sp = Space(make_controller)
    rec, chans = sp.recorder(dev, 1)
    vd = sp.configure(sp.vdisk(64 * MIB), rec, chans, dev, activate=False)
    agent = make_agent(dev, [file_channel(1, media.h264_short)], segment_seconds=4)
    agent.start()

    def held():
        st = status_file(agent)
        return st and chan_status(st, 1)["upload"]["state"] == "no_disk" and st
    wait_for(held, 30, "channel 1 held by no_disk", on_timeout=agent.proc.tail)
    wait_for(lambda: len(agent.spool_files()) >= 5, 30, "the whole source in the spool",
             on_timeout=agent.proc.tail)
    assert agent.kept() == {}
    assert sp.ctl.segments() == []
    assert "reason no_disk" in sp.ctl.log_text()
    assert agent.proc.alive()
    n = len(agent.spool_files())

    t0 = time.monotonic()
    sp.activate(vd)
    agent.wait_done(30, sp.ctl)
    assert time.monotonic() - t0 < 25, "the agent waited for its backoff, not the new config"
    assert agent.spool_files() == [] and len(agent.kept()) == n
    store_settled(sp.ctl)
    d, segs = check_disk_exact(sp, vd, dev)
    assert len(segs) == n
