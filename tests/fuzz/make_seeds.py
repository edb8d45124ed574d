#!/usr/bin/python3
"""Writes the seed corpora in tests/fuzz/corpus/<target>/.

A handful of valid and invalid inputs per target, each small. Run it after
changing the seeds (`/usr/bin/python3 tests/fuzz/make_seeds.py`); it
rewrites only the seed-* files, so crash reproducers added to a corpus
after a fix (named crash-*) stay. Deterministic: same files every run.
"""
import hashlib
import json
import os
import struct
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
SHA = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
START = 1764480000000000


def chunk(payload=b"", ch=2, start=START, offset=0, version=1, flags=0,
          length=None, crc=None, magic=b"C2DK"):
    length = len(payload) if length is None else length
    crc = zlib.crc32(payload) if crc is None else crc
    return (magic + struct.pack(">BBHqQII", version, flags, ch, start, offset,
                                length, crc) + payload)


def chunk_seeds():
    good = chunk(b"\x47" + bytes(range(187)))  # one TS packet
    return {
        "valid-empty": chunk(),
        "valid-ts-packet": good,
        "valid-max-offset": chunk(b"abc", ch=65535, start=0,
                                  offset=2**63 - 1 - 3),
        "trunc-header": good[:20],
        "trunc-payload": good[:-1],
        "trailing-byte": good + b"\0",
        "bad-magic": b"C2DX" + good[4:],
        "json-not-chunk": b'{"v":1,"t":"end","ch":2,"start":1}',
        "bad-version": chunk(b"x", version=2),
        "bad-flags": chunk(b"x", flags=1),
        "bad-crc": chunk(b"hello", crc=0),
        "too-long": chunk(b"", length=(1 << 20) + 1),
        "negative-start": chunk(b"x", start=-1),
        "offset-overflow": chunk(b"abc", offset=2**64 - 2),
        "offset-past-int64": chunk(b"abc", offset=2**63 - 2),
    }


def msg(**kw):
    return json.dumps(kw, separators=(",", ":")).encode()


def msg_seeds():
    begin = dict(v=1, t="begin", ch=2, start=START, dur=10010000,
                 size=1254300, sha256=SHA)
    return {
        "begin": msg(**begin),
        "end": msg(v=1, t="end", ch=2, start=START),
        "ack-offset": msg(v=1, t="ack", ch=2, start=START, status="offset",
                          offset=524288),
        "ack-committed": msg(v=1, t="ack", ch=2, start=START,
                             status="committed", offset=1254300),
        "ack-duplicate": msg(v=1, t="ack", ch=0, start=0,
                             status="duplicate", offset=0),
        "ack-rejected": msg(v=1, t="ack", ch=2, start=START,
                            status="rejected", offset=0,
                            reason="hash_mismatch"),
        "ack-reason-escapes": b'{"v":1,"t":"ack","ch":1,"start":1,'
                              b'"status":"rejected","offset":0,'
                              b'"reason":"q\\"\\\\\\/\\u0041"}',
        "pretty": json.dumps(begin, indent=2).encode(),
        "max-values": msg(v=1, t="begin", ch=65535, start=2**53,
                          dur=2**53, size=2**53, sha256="f" * 64),
        "version-2": msg(v=2, t="begin"),
        "missing-ch": msg(v=1, t="end", start=1),
        "non-integral": msg(v=1, t="end", ch=1.5, start=1),
        "exponent": b'{"v":1,"t":"end","ch":2,"start":1.76448e15}',
        "out-of-range": msg(v=1, t="end", ch=65536, start=-1),
        "bad-sha": msg(**dict(begin, sha256=SHA.upper())),
        "unknown-type": msg(v=1, t="hello", ch=1, start=1),
        "trailing": msg(v=1, t="end", ch=2, start=1) + b" {}",
        "nul": msg(v=1, t="end", ch=2, start=1) + b"\0",
        "array": b"[1,2,3]",
        "nested": b'{"v":1,"t":"end","ch":1,"start":1,"x":[[[{"a":[{}]}]]]}',
        "not-json": b"C2DK\x01\x00",
    }


def topic_seeds():
    return {
        "seg": b"c2d/v1/d/cam-01/seg",
        "ack": b"c2d/v1/d/cam-01/ack",
        "cfg": b"c2d/v1/d/Rec_9.x/cfg",
        "state": b"c2d/v1/d/a/state",
        "evt": b"c2d/v1/d/a..b/evt",
        "id-64": b"c2d/v1/d/" + b"a" * 64 + b"/seg",
        "id-65": b"c2d/v1/d/" + b"a" * 65 + b"/seg",
        "dotdot": b"c2d/v1/d/../seg",
        "dot": b"c2d/v1/d/./seg",
        "dash": b"c2d/v1/d/-x/seg",
        "slashes": b"c2d/v1/d/a/b/seg",
        "empty-id": b"c2d/v1/d//seg",
        "wildcard": b"c2d/v1/d/+/seg",
        "nul": b"c2d/v1/d/cam\0/seg",
        "other-ns": b"c2d/v1/pair/SN123/req",
        "utf8": b"c2d/v1/d/caf\xc3\xa9/seg",
    }


def config_seeds():
    broker = {"host": "mq.example.net", "port": 8883, "ca_file": "ca.pem",
              "cert_file": "dev.crt", "key_file": "dev.key",
              "keepalive_s": 30, "client_id": "rec-1"}
    full = {"name": "rec-1", "path": "/srv/c2d", "small": 3,
            "wide": -9223372036854775808, "negative": -7, "flag": True,
            "channels": [{"ch": 0}], "broker": broker}
    return {
        "full": json.dumps(full, indent=2).encode() + b"\n",
        "minimal": b'{"name":"x","broker":{"ca_file":"a","cert_file":"b",'
                   b'"key_file":"c"}}',
        "unknown-key": b'{"name":"x","colour":"red"}',
        "wrong-types": b'{"name":1,"small":"3","flag":1,'
                       b'"broker":{"port":"8883"}}',
        "range": b'{"name":"x","small":11,"negative":0,'
                 b'"broker":{"ca_file":"a","cert_file":"b","key_file":"c",'
                 b'"port":65536,"keepalive_s":4}}',
        "huge-numbers": b'{"name":"x","wide":1e300,"small":-1e400,'
                        b'"negative":9223372036854775808}',
        "syntax-error": b'{\n  "name": "x",\n}\n',
        "trailing": b'{"name":"x"}\n{"name":"y"}\n',
        "not-object": b'["name"]',
        "broker-not-object": b'{"name":"x","broker":"mq:8883"}',
        "nul": b'{"name":"x"}\0',
    }


# fuzz_ingest: a sequence of (selector u8, length u16 BE, payload). The
# selector's low 3 bits pick the device (tests/fuzz/fuzz_ingest.c DEVICES:
# 0 cam-1, 1 cam-2, 2 Rec_9.x, 3 a..b, 4 a 64-char id, 5 "..", 6 "../cam-1",
# 7 ""), 0x80 recomputes a chunk's length and CRC, 0xff restarts the ingest.
# State persists across inputs, so every seed uses its own segment starts.
CAM1, CAM2, REC9, DOTS, LONG, DOTDOT, ESCAPE, EMPTY = range(8)
FIX = 0x80
RESTART = b"\xff\x00\x00"


def m(dev, payload):
    return bytes([dev]) + struct.pack(">H", len(payload)) + payload


def begin(dev, ch, start, data=None, size=None, sha=None, dur=10000000):
    size = len(data) if size is None else size
    sha = hashlib.sha256(data or b"").hexdigest() if sha is None else sha
    return m(dev, msg(v=1, t="begin", ch=ch, start=start, dur=dur, size=size,
                      sha256=sha))


def end(dev, ch, start):
    return m(dev, msg(v=1, t="end", ch=ch, start=start))


def put(dev, ch, start, data, off=0, **kw):
    return m(dev, chunk(data, ch=ch, start=start, offset=off, **kw))


def seg_bytes(n, seed):
    x = seed * 2654435761 % 2**32 + 1
    out = bytearray()
    for _ in range(n):
        x ^= (x << 13) & 0xffffffff
        x ^= x >> 17
        x ^= (x << 5) & 0xffffffff
        out.append(x & 0xff)
    return bytes(out)


def upload(dev, ch, start, data, split=None):
    """begin + 2 chunks (correct CRCs) + end (correct sha256)."""
    split = len(data) // 2 if split is None else split
    return (begin(dev, ch, start, data) + put(dev, ch, start, data[:split]) +
            put(dev, ch, start, data[split:], off=split) + end(dev, ch, start))


def ingest_seeds():
    seeds = {}
    n = [0]

    def start():
        n[0] += 1
        return START + n[0] * 10000000

    def add(name, data):
        seeds[name] = data

    d = seg_bytes(300, 1)
    a, b = d[:120], d[120:]
    s = start()
    add("upload", upload(CAM1, 2, s, d))
    s = start()
    add("upload-empty", begin(CAM2, 0, s, b"") + put(CAM2, 0, s, b"") +
        end(CAM2, 0, s))
    s = start()
    add("upload-two-devices",
        begin(CAM1, 1, s, d) + begin(CAM2, 1, s, d) + put(CAM1, 1, s, a) +
        put(CAM2, 1, s, a) + put(CAM2, 1, s, b, off=120) +
        put(CAM1, 1, s, b, off=120) + end(CAM2, 1, s) + end(CAM1, 1, s))
    s = start()
    add("upload-long-id-ch7", upload(LONG, 7, s, d))
    s = start()
    add("upload-max-start", upload(REC9, 0, 2**53, seg_bytes(64, 2)))
    s = start()
    add("upload-fix-crc",
        begin(CAM1 | FIX, 3, s, d) + put(CAM1 | FIX, 3, s, a, crc=0) +
        put(CAM1 | FIX, 3, s, b, off=120, crc=0, length=7) + end(CAM1, 3, s))
    s = start()
    add("upload-three-chunks",
        begin(REC9, 5, s, d) + put(REC9, 5, s, d[:100]) +
        put(REC9, 5, s, d[100:200], off=100) +
        put(REC9, 5, s, d[200:], off=200) + end(REC9, 5, s))

    # Resumes: by a second begin, after a restart with and without a begin.
    s = start()
    add("resume-begin", begin(CAM1, 0, s, d) + put(CAM1, 0, s, a) +
        begin(CAM1, 0, s, d) + put(CAM1, 0, s, b, off=120) + end(CAM1, 0, s))
    s = start()
    add("resume-restart", begin(CAM2, 2, s, d) + put(CAM2, 2, s, a) +
        RESTART + begin(CAM2, 2, s, d) + put(CAM2, 2, s, b, off=120) +
        end(CAM2, 2, s))
    s = start()
    add("resume-restart-chunk", begin(CAM2, 3, s, d) + put(CAM2, 3, s, a) +
        RESTART + put(CAM2, 3, s, b, off=120) + end(CAM2, 3, s))
    s = start()
    add("resume-restart-end", upload(REC9, 1, s, d)[:-len(end(REC9, 1, s))] +
        RESTART + end(REC9, 1, s))
    s = start()
    add("redelivery",
        begin(CAM1, 4, s, d) + put(CAM1, 4, s, a) + put(CAM1, 4, s, a) +
        put(CAM1, 4, s, a[:50]) + put(CAM1, 4, s, b, off=120) +
        end(CAM1, 4, s) + put(CAM1, 4, s, a) + end(CAM1, 4, s) +
        begin(CAM1, 4, s, d))
    s = start()
    d2 = seg_bytes(200, 3)
    add("recut", begin(CAM1, 5, s, d) + put(CAM1, 5, s, a) +
        begin(CAM1, 5, s, d2) + put(CAM1, 5, s, d2[:100]) +
        put(CAM1, 5, s, d2[100:], off=100) + end(CAM1, 5, s))

    # Each bad input, after a begin where it needs an upload in progress.
    def after_begin(name, dev, ch, *msgs):
        s = start()
        add(name, begin(dev, ch, s, d) + put(dev, ch, s, a) +
            b"".join(f(s) for f in msgs))

    after_begin("bad-crc", CAM1, 6, lambda s: put(CAM1, 6, s, b, off=120, crc=1))
    after_begin("bad-truncated", CAM1, 6,
                lambda s: m(CAM1, chunk(b, ch=6, start=s, offset=120)[:-1]),
                lambda s: m(CAM1, chunk(b"", ch=6, start=s)[:20]))
    after_begin("bad-trailing", CAM1, 6,
                lambda s: m(CAM1, chunk(b, ch=6, start=s, offset=120) + b"\0"))
    after_begin("bad-version", CAM1, 6,
                lambda s: put(CAM1, 6, s, b, off=120, version=2))
    after_begin("bad-flags", CAM1, 6,
                lambda s: put(CAM1, 6, s, b, off=120, flags=1))
    after_begin("bad-too-long", CAM1, 6,
                lambda s: put(CAM1, 6, s, b"", off=120, length=(1 << 20) + 1))
    after_begin("bad-gap", CAM2, 6, lambda s: put(CAM2, 6, s, b[1:], off=121))
    after_begin("bad-overlap", CAM2, 6,
                lambda s: put(CAM2, 6, s, bytes(150), off=100))
    after_begin("bad-overlap-inside", CAM2, 6,
                lambda s: put(CAM2, 6, s, bytes(20), off=10))
    after_begin("bad-oversize", CAM2, 6,
                lambda s: put(CAM2, 6, s, b + b"x", off=120))
    after_begin("bad-size-mismatch", REC9, 6, lambda s: end(REC9, 6, s))
    after_begin("bad-negative-start", REC9, 6,
                lambda s: put(REC9, 6, -1, b, off=120))
    after_begin("bad-offset-overflow", REC9, 6,
                lambda s: put(REC9, 6, s, b, off=2**64 - 10))
    s = start()
    add("bad-hash-mismatch", begin(CAM1, 7, s, d) + put(CAM1, 7, s, a) +
        put(CAM1, 7, s, bytes(len(b)), off=120) + end(CAM1, 7, s) +
        end(CAM1, 7, s))
    s = start()
    add("bad-unknown-segment", put(CAM1, 0, s, a) + end(CAM1, 0, s))
    s = start()
    add("bad-channel", begin(CAM1, 8, s, d) + put(CAM1, 8, s, a) +
        end(CAM1, 8, s) + begin(CAM1, 65535, s, d))
    s = start()
    add("bad-too-large", begin(CAM1, 0, s, size=(1 << 20) + 1, sha=SHA) +
        begin(CAM1, 0, s, size=2**53, sha=SHA))
    s = start()
    add("bad-conflict", upload(CAM2, 4, s, d) + begin(CAM2, 4, s, d2) +
        begin(CAM2, 4, s, size=301, sha=hashlib.sha256(d).hexdigest()))
    s = start()
    add("bad-control",
        m(CAM1, msg(v=1, t="ack", ch=0, start=s, status="offset", offset=0)) +
        m(CAM1, msg(v=2, t="begin", ch=1, start=s)) +
        m(CAM1, msg(v=1, t="hello", ch=1, start=s)) +
        m(CAM1, msg(v=1, t="end", ch=1.5, start=s)) +
        m(CAM1, msg(v=1, t="end", ch=1, start=-5)) +
        m(CAM1, msg(v=1, t="begin", ch=1, start=s, dur=1, size=1,
                    sha256=SHA.upper())) +
        m(CAM1, b"not json") + m(CAM1, b"") + m(CAM1, b"[1]") +
        m(CAM1, msg(v=1, t="end", ch=1, start=s) + b"\0") +
        m(CAM1, b"C2DK") +
        m(CAM1, b'{"v":1,"t":"end","ch":1,"start":' + str(s).encode() +
          b',"pad":"' + b"x" * 4096 + b'"}'))
    s = start()
    add("bad-devices", upload(DOTDOT, 0, s, d) + upload(ESCAPE, 0, s, d) +
        upload(EMPTY, 0, s, d) + upload(DOTDOT | FIX, 1, s, d))
    # The per-device limit: 65 uploads in progress on a device of its own.
    s = start()
    add("bad-partial-limit",
        b"".join(begin(DOTS, 0, s + i, size=10, sha=SHA, dur=1)
                 for i in range(CTL_PARTIALS + 1)) +
        RESTART + begin(DOTS, 0, s + CTL_PARTIALS, size=10, sha=SHA, dur=1) +
        begin(DOTS, 0, s + 3, size=10, sha=SHA, dur=1))
    return seeds


# controller/ingest.h CTL_INGEST_PARTIALS_PER_DEVICE
CTL_PARTIALS = 64


def agent_config_seeds():
    broker = {"host": "mq.example.net", "port": 8883, "ca_file": "ca.pem",
              "cert_file": "/etc/c2d/dev.crt", "key_file": "dev.key",
              "keepalive_s": 30, "client_id": "rec-1"}
    full = {"device_id": "rec-0001", "state_dir": "state", "broker": broker,
            "segment_seconds": 10, "chunk_bytes": 262144, "window_chunks": 8,
            "rate_limit_bps": 0, "spool_max_bytes": 1073741824,
            "ack_timeout_s": 10, "keep_sent_dir": "sent",
            "channels": [{"id": 1, "name": "Entrance",
                          "source": "media/ch1.ts", "realtime": True,
                          "loop": True},
                         {"id": 0, "source": "rtsp://cam/stream"},
                         {"id": 65535, "source": "/abs/dir"}]}
    minimal = {"device_id": "r", "state_dir": "/var/lib/c2d",
               "broker": {"ca_file": "a", "cert_file": "b", "key_file": "c"},
               "channels": [{"id": 0, "source": "c:x"}]}

    def j(**kw):
        return json.dumps(dict(minimal, **kw), separators=(",", ":")).encode()

    def jb(**kw):
        return j(broker=dict(minimal["broker"], **kw))

    return {
        "full": json.dumps(full, indent=2).encode() + b"\n",
        "minimal": j(),
        "max-channels": j(channels=[{"id": i, "source": "s%d" % i}
                                    for i in range(64)]),
        "too-many-channels": j(channels=[{"id": i, "source": "s"}
                                         for i in range(65)]),
        "no-channels": j(channels=[]),
        "channels-not-array": j(channels={"id": 0}),
        "channel-not-object": j(channels=[1]),
        "channel-dup-id": j(channels=[{"id": 3, "source": "a"},
                                      {"id": 3, "source": "b"}]),
        "channel-empty-source": j(channels=[{"id": 0, "source": ""}]),
        "channel-unknown-key": j(channels=[{"id": 0, "source": "a", "x": 1}]),
        "channel-id-range": j(channels=[{"id": 65536, "source": "a"}]),
        "bad-device-id": j(device_id="../x"),
        "device-id-65": j(device_id="a" * 65),
        "empty-state-dir": j(state_dir=""),
        "empty-host": jb(host=""),
        "empty-ca": jb(ca_file=""),
        "empty-client-id": jb(client_id=""),
        "broker-unknown-key": jb(colour="red"),
        "broker-missing": json.dumps({k: v for k, v in minimal.items()
                                      if k != "broker"}).encode(),
        "long-path": j(state_dir="p/" * 2100),
        "ranges": j(segment_seconds=601, chunk_bytes=4095),
        "range-spool": j(spool_max_bytes=2**53 + 1),
        "wrong-types": j(window_chunks="8"),
        "keep-sent-empty": j(keep_sent_dir=""),
        "unknown-key": j(colour="red"),
        "syntax-error": b'{\n  "device_id": "x",\n}\n',
        "not-object": b'["device_id"]',
        "nul": j() + b"\0",
        "empty": b"",
    }


TARGETS = {
    "fuzz_chunk": chunk_seeds,
    "fuzz_msg": msg_seeds,
    "fuzz_topic": topic_seeds,
    "fuzz_config": config_seeds,
    "fuzz_ingest": ingest_seeds,
    "fuzz_agent_config": agent_config_seeds,
}


def main():
    for target, make in TARGETS.items():
        d = os.path.join(HERE, "corpus", target)
        os.makedirs(d, exist_ok=True)
        for old in os.listdir(d):
            if old.startswith("seed-"):
                os.unlink(os.path.join(d, old))
        for name, data in make().items():
            with open(os.path.join(d, "seed-" + name), "wb") as f:
                f.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
