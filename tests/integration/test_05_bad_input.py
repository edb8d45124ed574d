"""05: the controller refuses bad input with the documented reason, keeps
running, writes nothing outside its data_dir, and still commits a good
segment afterwards.

A device (paho-mqtt, MQTT v5, TLS with its certificate) publishes each bad
input on its own seg topic and reads the answer on its ack topic; the
reasons are those of proto/README.md ("Rejection reasons"). Device ids that
try to leave the store (certificates with CN "..", "../x", "a/..", ...)
must be refused whatever the broker lets through."""

import hashlib
import json
import os

import pytest

from c2dtest import (
    MqttClient, ack_topic, begin_msg, chunk_frame, check_store_consistent, end_msg, run,
    seg_topic, snapshot_tree, wait_for,
)

DEV = "rec-a"
MAX_SEG = 1_000_000
MAX_CH = 4
S0 = 1764480000000000  # a start time; each case adds its own offset
MIB = 1 << 20


class Device:
    """One device talking the wire protocol by hand."""

    def __init__(self, broker, pki, dev, ctl):
        self.dev = dev
        self.ctl = ctl
        self.c = MqttClient(broker, pki.cert(dev), "t-" + dev, subscribe=[ack_topic(dev)])

    def send(self, payload):
        self.c.publish(seg_topic(self.dev), payload)

    def acks(self, timeout):
        """Acks (decoded JSON) until none arrives for `timeout` s."""
        out = []
        for topic, payload in self.c.drain(timeout):
            out.append(json.loads(payload))
        return out

    def ask(self, payload, ch=None, start=None, timeout=10):
        """Publishes payload and returns the first ack about (ch, start)
        (any ack if both are None)."""
        self.send(payload)
        deadline_msgs = []

        def match():
            m = self.c.get(0.2)
            if m is None:
                return None
            a = json.loads(m[1])
            deadline_msgs.append(a)
            if (ch is None or a.get("ch") == ch) and (start is None or a.get("start") == start):
                return a
            return None
        assert self.ctl.alive(), "controller died\n" + self.ctl.diag()
        return wait_for(match, timeout, "an ack for ch=%s start=%s (got %s)" % (ch, start, deadline_msgs),
                        interval=0, on_timeout=self.ctl.diag)

    def expect_rejected(self, payload, reason, ch=None, start=None, offset=None):
        a = self.ask(payload, ch, start)
        assert a.get("t") == "ack" and a.get("v") == 1, a
        assert a.get("status") == "rejected" and a.get("reason") == reason, (
            "expected rejected/%s, got %s" % (reason, a))
        if offset is not None:
            assert a.get("offset") == offset, "expected offset %d in %s" % (offset, a)
        assert self.ctl.alive(), "controller died after %s\n%s" % (reason, self.ctl.diag())
        return a

    def upload(self, ch, start, data, chunk=65536):
        """A whole well-formed upload; returns the final ack."""
        a = self.ask(begin_msg(ch, start, data, dur=2_000_000), ch, start)
        assert a["status"] == "offset" and a["offset"] == 0, a
        for off in range(0, len(data), chunk):
            a = self.ask(chunk_frame(ch, start, off, data[off:off + chunk]), ch, start)
            assert a["status"] == "offset" and a["offset"] == min(off + chunk, len(data)), a
        return self.ask(end_msg(ch, start), ch, start)

    def close(self):
        self.c.close()


@pytest.fixture
def good_ts(media, tmp_path):
    """A real 2-second MPEG-TS segment."""
    out = tmp_path / "good.ts"
    run(["ffmpeg", "-nostdin", "-v", "error", "-i", media.h264_short, "-t", "2", "-map", "0",
         "-c", "copy", "-f", "mpegts", out], timeout=60)
    return out.read_bytes()


@pytest.fixture
def env(broker, pki, make_controller, tmp_path):
    ctl = make_controller(max_segment_bytes=MAX_SEG, max_channels=MAX_CH).start()
    dev = Device(broker, pki, DEV, ctl)
    # ready when it answers: `end` for a segment never begun
    def ready():
        try:
            return dev.ask(end_msg(0, 1), timeout=1)
        except Exception:
            return None
    a = wait_for(ready, 30, "the controller to answer", on_timeout=ctl.diag, interval=0)
    assert a["status"] == "rejected" and a["reason"] == "unknown_segment", a
    dev.acks(0.5)
    yield ctl, dev
    dev.close()


def test_malformed_messages(env):
    ctl, d = env
    d.expect_rejected(b"{not json", "bad_json")
    d.expect_rejected(b"[1, 2, 3]", "bad_json")
    d.expect_rejected(b"", "bad_json")
    d.expect_rejected(b"\xff\xfe binary junk", "bad_json")
    d.expect_rejected(json.dumps({"v": 2, "t": "begin", "ch": 0, "start": S0, "dur": 1, "size": 1,
                                  "sha256": "0" * 64}).encode(), "unsupported_version")
    d.expect_rejected(json.dumps({"v": 1, "t": "hello", "ch": 0, "start": S0 + 1}).encode(),
                      "unknown_type")
    d.expect_rejected(json.dumps({"v": 1, "t": "begin", "ch": 0, "start": S0 + 2, "dur": 1,
                                  "size": 10}).encode(), "bad_field")
    d.expect_rejected(json.dumps({"v": 1, "t": "begin", "ch": 0, "start": -5, "dur": 1,
                                  "size": 10, "sha256": "0" * 64}).encode(), "out_of_range")
    # a control message over 4096 bytes is refused unparsed
    big = json.dumps({"v": 1, "t": "end", "ch": 0, "start": S0 + 3, "pad": "x" * 5000}).encode()
    d.expect_rejected(big, "bad_length")
    assert ctl.segments() == []


def test_bad_frames(env):
    ctl, d = env
    data = os.urandom(1000)
    s = S0 + 10
    # truncated: header claims 1000 bytes, 10 follow; and a bare partial header
    d.expect_rejected(chunk_frame(0, s, 0, data[:10], length=1000), "truncated", 0, s)
    d.expect_rejected(b"C2DK" + b"\x01\x00" + b"\x00" * 10, "truncated")
    # oversize frames: payload over 1 MiB, declared and actual
    d.expect_rejected(chunk_frame(0, s, 0, b"\0" * (MIB + 1)), "bad_length", 0, s)
    d.expect_rejected(chunk_frame(0, s, 0, data[:10], length=0xFFFFFFFF), "bad_length", 0, s)
    # trailing bytes after the payload
    d.expect_rejected(chunk_frame(0, s, 0, data[:10]) + b"x", "bad_length", 0, s)
    d.expect_rejected(chunk_frame(0, s, 0, data, crc=0x12345678), "bad_crc", 0, s)
    d.expect_rejected(chunk_frame(0, s, 0, data, version=2), "unsupported_version", 0, s)
    # chunk and end for a segment never begun
    d.expect_rejected(chunk_frame(1, s + 1, 0, data), "unknown_segment", 1, s + 1)
    d.expect_rejected(end_msg(1, s + 2), "unknown_segment", 1, s + 2)
    assert ctl.segments() == []


def test_limits(env):
    ctl, d = env
    data = os.urandom(1000)
    s = S0 + 20
    d.expect_rejected(begin_msg(MAX_CH, s, data), "bad_channel", MAX_CH, s)
    d.expect_rejected(begin_msg(65535, s, data), "bad_channel", 65535, s)
    d.expect_rejected(begin_msg(0, s, size=MAX_SEG + 1, sha256="0" * 64), "too_large", 0, s)
    a = d.ask(chunk_frame(MAX_CH, s, 0, data), MAX_CH, s)
    assert a["status"] == "rejected" and a["reason"] in ("bad_channel", "unknown_segment"), a
    assert ctl.segments() == []
    assert not any(ctl.partial_files()), ctl.partial_files()


def test_offsets(env):
    """Overlap, gap, past the declared size, end too early, an exact repeat
    (QoS 1 redelivery, ignored); then the same upload completes."""
    ctl, d = env
    data = os.urandom(1000)
    ch, s = 2, S0 + 30
    a = d.ask(begin_msg(ch, s, data), ch, s)
    assert a["status"] == "offset" and a["offset"] == 0, a
    a = d.ask(chunk_frame(ch, s, 0, data[:400]), ch, s)
    assert a["status"] == "offset" and a["offset"] == 400, a
    d.expect_rejected(chunk_frame(ch, s, 200, data[200:600]), "overlap", ch, s, offset=400)
    d.expect_rejected(chunk_frame(ch, s, 600, data[600:]), "gap", ch, s, offset=400)
    d.expect_rejected(chunk_frame(ch, s, 400, data[400:] + b"extra"), "oversize", ch, s)
    d.expect_rejected(end_msg(ch, s), "size_mismatch", ch, s, offset=400)
    # exact repeat of bytes already held: ignored (no rejection)
    d.send(chunk_frame(ch, s, 0, data[:400]))
    for a in d.acks(1.0):
        assert a.get("status") == "offset" and a.get("offset") == 400, a
    # resume (begin again) says where to continue
    a = d.ask(begin_msg(ch, s, data), ch, s)
    assert a["status"] == "offset" and a["offset"] == 400, a
    a = d.ask(chunk_frame(ch, s, 400, data[400:]), ch, s)
    assert a["status"] == "offset" and a["offset"] == 1000, a
    a = d.ask(end_msg(ch, s), ch, s)
    assert a["status"] == "committed", a
    segs = ctl.segments()
    assert [(x["channel"], x["start_us"], x["size"]) for x in segs] == [(ch, s, 1000)]
    assert (ctl.data_dir / segs[0]["path"]).read_bytes() == data
    check_store_consistent(ctl, segs)


def test_hash_and_conflict(env, good_ts):
    ctl, d = env
    ch, s = 1, S0 + 40
    wrong = hashlib.sha256(b"something else").hexdigest()
    a = d.ask(begin_msg(ch, s, good_ts, sha256=wrong), ch, s)
    assert a["status"] == "offset" and a["offset"] == 0, a
    for off in range(0, len(good_ts), 65536):
        d.ask(chunk_frame(ch, s, off, good_ts[off:off + 65536]), ch, s)
    d.expect_rejected(end_msg(ch, s), "hash_mismatch", ch, s)
    assert ctl.segments() == [], "a segment with the wrong hash was stored"
    # the right bytes under the right hash commit; again: duplicate
    a = d.upload(ch, s + 1, good_ts)
    assert a["status"] == "committed", a
    a = d.ask(begin_msg(ch, s + 1, good_ts, dur=2_000_000), ch, s + 1)
    assert a["status"] == "duplicate", a
    # different bytes for the same (channel, start): conflict
    other = good_ts[:-188]
    d.expect_rejected(begin_msg(ch, s + 1, other), "conflict", ch, s + 1)
    segs = ctl.segments()
    assert len(segs) == 1 and segs[0]["size"] == len(good_ts)
    check_store_consistent(ctl, segs)


BAD_IDS = ["..", "../x", "a/..", ".hidden", "-x", "x y", "rec-a/../rec-b"]


def test_device_ids_that_leave_the_store(env, broker, pki, tmp_path, good_ts):
    ctl, d = env
    before = snapshot_tree(tmp_path, exclude=[ctl.data_dir, ctl.log, broker.dir])
    data_before = set(os.listdir(ctl.data_dir))
    for bad in BAD_IDS:
        try:
            dev = Device(broker, pki, bad, ctl)
        except Exception as e:  # the broker may refuse the identity outright: fine
            print("broker refused CN %r: %s" % (bad, e))
            continue
        try:
            s = S0 + 50
            dev.send(begin_msg(0, s, good_ts))
            dev.send(chunk_frame(0, s, 0, good_ts))
            dev.send(end_msg(0, s))
            # an answer, if any reaches this device, must be a rejection
            for a in dev.acks(1.5):
                assert a.get("status") == "rejected" and a.get("reason") == "bad_name", (bad, a)
        finally:
            dev.close()
        assert ctl.alive(), "controller died on device id %r\n%s" % (bad, ctl.diag())
    # a good segment still commits after all that
    a = d.upload(3, S0 + 60, good_ts)
    assert a["status"] == "committed", a
    after = snapshot_tree(tmp_path, exclude=[ctl.data_dir, ctl.log, broker.dir])
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    changed = {k for k in changed if not k.startswith("pki")}
    assert not changed, "written outside data_dir: %s" % sorted(changed)
    new_top = set(os.listdir(ctl.data_dir)) - data_before
    assert not new_top, "new entries at the top of data_dir: %s" % sorted(new_top)
    for sub in ("store", "partial"):
        p = ctl.data_dir / sub
        if p.exists():
            assert set(os.listdir(p)) <= {DEV}, "%s/ holds %s" % (sub, sorted(os.listdir(p)))
    segs = ctl.segments()
    assert {x["device"] for x in segs} == {DEV}
    check_store_consistent(ctl, segs)


def test_good_segment_commits_after_bad_input(env, good_ts):
    """Everything of this file in a row on one controller, then a good one."""
    ctl, d = env
    s = S0 + 70
    for payload in [b"{", b"C2DK", chunk_frame(0, s, 0, b"abc", crc=1), begin_msg(9, s, b"x"),
                    begin_msg(0, s, size=MAX_SEG + 1, sha256="0" * 64), end_msg(0, s)]:
        d.send(payload)
    rejected = [a for a in d.acks(1.5)]
    assert rejected and all(a["status"] == "rejected" for a in rejected), rejected
    a = d.upload(0, s + 1, good_ts)
    assert a["status"] == "committed", a
    segs = ctl.segments()
    assert [(x["device"], x["channel"], x["start_us"]) for x in segs] == [(DEV, 0, s + 1)]
    assert (ctl.data_dir / segs[0]["path"]).read_bytes() == good_ts
    check_store_consistent(ctl, segs)
