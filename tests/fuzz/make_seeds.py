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
        "csr": b"c2d/v1/d/rec-1/csr",
        "cert": b"c2d/v1/d/rec-1/cert",
        "csr-reserved": b"c2d/v1/d/c2d-controller/csr",
        "cert-reserved-case": b"c2d/v1/d/C2D-x/cert",
        "seg-reserved": b"c2d/v1/d/c2d-controller/seg",
        "csr-slashes": b"c2d/v1/d/a/b/csr",
        "csr-extra": b"c2d/v1/d/rec-1/csr/x",
        "pair-req": b"c2d/v1/pair/SN-0001/req",
        "pair-resp": b"c2d/v1/pair/SN_2.x/resp",
        "pair-reserved": b"c2d/v1/pair/c2d-controller/req",
        "pair-empty": b"c2d/v1/pair//req",
        "pair-slashes": b"c2d/v1/pair/a/b/req",
        "pair-wildcard": b"c2d/v1/pair/+/req",
        "pair-hash": b"c2d/v1/pair/SN-1/#",
        "pair-id-64": b"c2d/v1/pair/" + b"s" * 64 + b"/resp",
        "pair-id-65": b"c2d/v1/pair/" + b"s" * 65 + b"/req",
        "pair-dot": b"c2d/v1/pair/.x/req",
        "pair-other-kind": b"c2d/v1/pair/SN-1/csr",
        "id-only": b"SN-0001",
        "id-reserved": b"c2d-x",
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


# fuzz_http: raw requests. tests/fuzz/fuzz_http.c replaces @TOKEN@ by the
# distributor's session token and @ITOKEN@ by the installer's; the ids are
# those its set-up makes (FUZZ_HTTP_TRACE=1 prints them).
H_INST, H_CLIENT, H_SITE, H_REC, H_CH, H_DASHCAM = 4, 8, 9, 10, 11, 13
H_ROLE, H_USER, H_GROUP, H_DRIVER, H_GEOFENCE, H_VDISK = 15, 16, 18, 19, 20, 21


def http(method, target, token="@ITOKEN@", body=None, headers=(),
         version="HTTP/1.1", close=True):
    lines = ["%s %s %s" % (method, target, version), "Host: localhost"]
    if close:
        lines.append("Connection: close")
    if token:
        lines.append("Authorization: Bearer " + token)
    if body is not None:
        if not isinstance(body, bytes):
            body = json.dumps(body, separators=(",", ":")).encode()
        lines += ["Content-Type: application/json",
                  "Content-Length: %d" % len(body)]
    lines += list(headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


def http_seeds():
    seeds = {}
    kinds = ["clients", "sites", "recorders", "dashcams", "channels", "users",
             "roles", "groups", "drivers", "geofences", "bookmarks", "events",
             "vdisks", "ai-subscriptions"]
    ids = {"clients": H_CLIENT, "sites": H_SITE, "recorders": H_REC,
           "dashcams": H_DASHCAM, "channels": H_CH, "users": H_USER,
           "groups": H_GROUP, "drivers": H_DRIVER, "geofences": H_GEOFENCE,
           "vdisks": H_VDISK}
    for k in kinds:
        seeds["list-" + k] = http("GET", "/api/v1/%s?limit=2" % k)
        if k in ids:
            seeds["get-" + k] = http("GET", "/api/v1/%s/%d" % (k, ids[k]))
    seeds["me"] = http("GET", "/api/v1/me", "@TOKEN@")
    seeds["me-keepalive"] = http("GET", "/api/v1/me", close=False)
    seeds["me-no-token"] = http("GET", "/api/v1/me", None)
    seeds["me-basic"] = http("GET", "/api/v1/me", None,
                             headers=["Authorization: Basic Zm9vOmJhcg=="])
    seeds["me-bearer-lower"] = http("GET", "/api/v1/me", None,
                                    headers=["authorization: bearer @ITOKEN@"])
    seeds["me-bad-token"] = http("GET", "/api/v1/me", "AAAA")
    seeds["login"] = http("POST", "/api/v1/session", None,
                          {"email": "inst@example.com",
                           "password": "fuzz password"})
    seeds["login-wrong"] = http("POST", "/api/v1/session", None,
                                {"email": "inst@example.com",
                                 "password": "not the password"})
    seeds["logout-other"] = http("DELETE", "/api/v1/session", "AAAA")
    seeds["password"] = http("PUT", "/api/v1/me/password", "@ITOKEN@",
                             {"old_password": "wrong one here",
                              "new_password": "another password"})
    seeds["prefs-get"] = http("GET", "/api/v1/me/preferences")
    seeds["prefs-put"] = http("PUT", "/api/v1/me/preferences",
                              body={"language": "fr", "theme": "dark"})
    seeds["client-create"] = http("POST", "/api/v1/clients",
                                  body={"name": "C2", "email": "c2@example.com"})
    seeds["client-modify"] = http("PUT", "/api/v1/clients/%d" % H_CLIENT,
                                  body={"name": "C renamed"})
    seeds["site-create"] = http("POST", "/api/v1/sites",
                                body={"name": "S2", "client_id": H_CLIENT})
    seeds["recorder-create"] = http(
        "POST", "/api/v1/recorders",
        body={"name": "R2", "serial": "NVR-2", "model": "X8",
              "site_id": H_SITE, "channels": 4, "device_id": "nvr-2"})
    seeds["recorder-state"] = http("GET", "/api/v1/recorders/%d/state" % H_REC)
    seeds["pairing-code"] = http("POST", "/api/v1/recorders/%d/pairing-code" % H_REC)
    seeds["unpair"] = http("DELETE", "/api/v1/recorders/%d/pairing" % H_REC)
    seeds["channel-modify"] = http("PUT", "/api/v1/channels/%d" % H_CH,
                                   body={"name": "Door", "cloud_backup": False,
                                         "ai_algorithms": ["person"]})
    seeds["channels-of"] = http("GET", "/api/v1/channels?recorder_id=%d" % H_REC)
    seeds["recordings"] = http(
        "GET", "/api/v1/channels/%d/recordings?from=2026-11-30T00:00:00Z"
               "&to=2026-12-01T00:00:00Z&limit=10&after=5" % H_CH)
    seeds["segment-range"] = http(
        "GET", "/api/v1/channels/%d/segments/1764480000000000" % H_CH,
        headers=["Range: bytes=0-99"])
    seeds["playlist"] = http("GET", "/api/v1/channels/%d/playlist.m3u8"
                                    "?from=2026-11-30T00:00:00Z" % H_CH)
    seeds["export"] = http("GET", "/api/v1/channels/%d/export.mp4?from="
                                  "2026-11-30T00:00:00Z&to=2026-11-30T00:10:00Z" % H_CH)
    seeds["playback"] = http("POST", "/api/v1/channels/%d/playback" % H_CH,
                             body={"from": "2026-11-30T00:00:00Z",
                                   "to": "2026-11-30T01:00:00Z"})
    seeds["play-token"] = http("GET", "/api/v1/play/AAAA/playlist.m3u8", None)
    seeds["play-segment"] = http("GET", "/api/v1/play/AAAA/1.ts", None)
    seeds["dashcam-driver"] = http("PUT", "/api/v1/dashcams/%d/driver" % H_DASHCAM,
                                   body={"driver_id": H_DRIVER})
    seeds["geofence-polygon"] = http(
        "POST", "/api/v1/geofences",
        body={"name": "Poly", "shape": {"type": "polygon", "points": [
            {"lat": 48.0, "lon": 2.0}, {"lat": 48.1, "lon": 2.0},
            {"lat": 48.1, "lon": 2.1}]}, "dashcam_ids": [H_DASHCAM]})
    seeds["bookmark"] = http("POST", "/api/v1/bookmarks",
                             body={"channel_id": H_CH, "name": "Mark",
                                   "start": "2026-11-30T08:00:00Z",
                                   "end": "2026-11-30T08:05:00Z"})
    seeds["events-filter"] = http("GET", "/api/v1/events?recorder_id=%d"
                                         "&acknowledged=false&from=2026-11-30T00:00:00Z" % H_REC)
    seeds["event-modify"] = http("PUT", "/api/v1/events/1",
                                 body={"acknowledged": True})
    seeds["regional"] = http("PUT", "/api/v1/settings/regional",
                             body={"time_zone": "Europe/Paris", "units": "metric"})
    seeds["regional-get"] = http("GET", "/api/v1/settings/regional")
    seeds["map-live"] = http("GET", "/api/v1/map/live")
    seeds["map-trips"] = http("GET", "/api/v1/map/trips?dashcam_id=%d&from="
                                     "2026-11-30T00:00:00Z&to=2026-11-30T10:00:00Z" % H_DASHCAM)
    seeds["alarms"] = http("GET", "/api/v1/alarms?recorder_id=%d" % H_REC)
    seeds["role-modify"] = http("PUT", "/api/v1/roles/%d" % H_ROLE,
                                body={"permissions": ["site.get"]})
    seeds["user-add"] = http("POST", "/api/v1/users",
                             body={"email": "u2@example.com", "role": "Administrator"})
    seeds["user-link"] = http("POST", "/api/v1/users/%d/password-link" % H_USER)
    seeds["user-delete"] = http("DELETE", "/api/v1/users/%d" % H_USER)
    seeds["set-password-get"] = http("GET", "/api/v1/set-password?token=AAAA", None)
    seeds["set-password"] = http("POST", "/api/v1/set-password", None,
                                 {"token": "AAAA", "password": "0123456789ab"})
    seeds["installers"] = http("GET", "/api/v1/installers", "@TOKEN@")
    seeds["installer-create"] = http("POST", "/api/v1/installers", "@TOKEN@",
                                     {"name": "I2", "email": "i2@example.com"})
    seeds["installer-clients"] = http("GET", "/api/v1/installers/%d/clients" % H_INST,
                                      "@TOKEN@")
    seeds["vdisk-create"] = http("POST", "/api/v1/installers/%d/vdisks" % H_INST,
                                 "@TOKEN@", {"client_id": H_CLIENT,
                                             "capacity_bytes": 1 << 30,
                                             "retention_days": 7})
    seeds["vdisk-channels"] = http("PUT", "/api/v1/vdisks/%d/channels" % H_VDISK,
                                   body={"channels": [{"id": H_CH, "cloud_backup": True}]})
    seeds["vdisk-connection"] = http("PUT", "/api/v1/vdisks/%d/connection" % H_VDISK,
                                     body={"device_id": "nvr-1"})
    seeds["vdisk-activate"] = http("POST", "/api/v1/vdisks/%d/activate" % H_VDISK)
    seeds["vdisk-steps"] = http("GET", "/api/v1/vdisks/%d/steps" % H_VDISK)
    seeds["ai-sub"] = http("POST", "/api/v1/installers/%d/ai-subscriptions" % H_INST,
                           "@TOKEN@", {"client_id": H_CLIENT,
                                       "algorithms": ["person"], "channels_max": 1})
    seeds["audit"] = http("GET", "/api/v1/audit?kind=recorder&id=%d&limit=5"
                                 "&from=2026-01-01T00:00:00Z" % H_REC, "@TOKEN@")
    seeds["delete-recorder"] = http("DELETE", "/api/v1/recorders/%d" % H_REC)
    # The server's own refusals.
    seeds["not-found"] = http("GET", "/api/v1/nothing")
    seeds["method"] = http("PATCH", "/api/v1/clients")
    seeds["head"] = http("HEAD", "/api/v1/me")
    seeds["options"] = http("OPTIONS", "*", None)
    seeds["pct-nul"] = http("GET", "/api/v1/clients/%00")
    seeds["pct-bad"] = http("GET", "/api/v1/clients/%zz?x=%4")
    seeds["pct-slash"] = http("GET", "/api/v1/clients/8%2F9")
    seeds["utf8-bad"] = http("GET", "/api/v1/clients?name=ab").replace(
        b"=ab", b"=\xff\xfe")
    seeds["drive"] = http("PUT", "/api/v1/vdisks/%d/drive" % H_VDISK,
                          body={"name": "Disk", "retention_days": 10,
                                "camera_caps": [{"channel_id": H_CH,
                                                 "cap_bytes": 1 << 20}]})
    seeds["vdisk-resize"] = http("PUT", "/api/v1/installers/%d/vdisks/%d"
                                 % (H_INST, H_VDISK), "@TOKEN@",
                                 {"capacity_bytes": 2 << 30})
    seeds["long-url"] = http("GET", "/api/v1/clients?" + "a" * 4100)
    seeds["query-repeat"] = http("GET", "/api/v1/clients?limit=1&limit=2&after&=x")
    seeds["ctl-header"] = http("GET", "/api/v1/me", headers=["X-A: b\x01c"])
    seeds["bad-json"] = http("POST", "/api/v1/clients", body=b'{"name":')
    seeds["json-array"] = http("POST", "/api/v1/clients", body=b"[1,2]")
    seeds["json-utf8"] = http("POST", "/api/v1/clients",
                              body=b'{"name":"\xc3\x28","email":"a@b.c"}')
    seeds["json-deep"] = http("POST", "/api/v1/roles",
                              body=b'{"name":"x","permissions":' + b"[" * 600 +
                              b"]" * 600 + b"}")
    seeds["wrong-type"] = http("POST", "/api/v1/clients", None,
                               headers=["Content-Type: text/plain",
                                        "Content-Length: 2"]) + b"{}"
    seeds["too-large"] = http("POST", "/api/v1/clients",
                              headers=["Content-Type: application/json",
                                       "Content-Length: 99999999"])
    seeds["chunked"] = http("POST", "/api/v1/clients",
                            headers=["Content-Type: application/json",
                                     "Transfer-Encoding: chunked"]) + \
        b'5\r\n{"nam\r\n1c\r\ne":"Chunked","email":"c@d.ef"}\r\n0\r\n\r\n'
    seeds["expect-continue"] = http("POST", "/api/v1/clients",
                                    body={"name": "E", "email": "e@f.gh"},
                                    headers=["Expect: 100-continue"])
    seeds["http10"] = http("GET", "/api/v1/me", version="HTTP/1.0", close=False)
    seeds["pipelined"] = (http("GET", "/api/v1/me", close=False) +
                          http("GET", "/api/v1/clients", close=True))
    seeds["no-spaces"] = b"GET/api/v1/me\r\n\r\n"
    seeds["garbage"] = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"
    seeds["half-request"] = b"GET /api/v1/me HTTP/1.1\r\nHost: loc"
    return seeds


def pair_answer_seeds():
    ok = {"ok": True, "device_id": "rec-1", "cert": "@CERT@", "chain": "CHAIN",
          "broker": {"host": "mq.example.net", "port": 8883}}

    def j(**kw):
        return json.dumps(dict(ok, **kw), separators=(",", ":")).encode()

    return {
        "ok": j(),
        "ok-pretty": json.dumps(ok, indent=2).encode(),
        "ok-ipv6": j(broker={"host": "::1", "port": 1}),
        "refused": b'{"ok":false,"error":"wrong_code"}',
        "refused-no-reason": b'{"ok":false}',
        "refused-number": b'{"ok":false,"error":7}',
        "other-device": j(device_id="rec-2"),
        "bad-device": j(device_id="../x"),
        "no-cert": b'{"ok":true,"device_id":"rec-1","chain":"",'
                   b'"broker":{"host":"h","port":1}}',
        "bad-cert": j(cert="-----BEGIN CERTIFICATE-----\nAAAA\n"
                           "-----END CERTIFICATE-----\n"),
        "port-range": j(broker={"host": "h", "port": 65536}),
        "port-fraction": j(broker={"host": "h", "port": 8883.5}),
        "host-empty": j(broker={"host": "", "port": 1}),
        "host-long": j(broker={"host": "h" * 256, "port": 1}),
        "broker-missing": j(broker=None),
        "ok-string": j(ok="true"),
        "trailing": j() + b"garbage",
        "nul": j()[:20] + b"\0" + j()[20:],
        "not-json": b"-----BEGIN CERTIFICATE-----",
        "empty": b"",
    }


def renew_answer_seeds():
    ok = {"ok": True, "cert": "@CERT@", "chain": "CHAIN"}

    def j(**kw):
        return json.dumps(dict(ok, **kw), separators=(",", ":")).encode()

    return {
        "ok": j(),
        "ok-pretty": json.dumps(ok, indent=2).encode(),
        "ok-no-chain": b'{"ok":true,"cert":"@CERT@"}',
        "ok-empty-chain": j(chain=""),
        "too-soon": b'{"ok":false,"error":"too_soon"}',
        "revoked": b'{"ok":false,"error":"revoked"}',
        "bad-csr": b'{"ok":false,"error":"bad_csr"}',
        "refused-no-reason": b'{"ok":false}',
        "bad-cert": j(cert="-----BEGIN CERTIFICATE-----\nAAAA\n"
                           "-----END CERTIFICATE-----\n"),
        "ok-number": j(ok=1),
        "array": b'[{"ok":true}]',
        "not-json": b"@CERT@",
        "nul": j()[:10] + b"\0" + j()[10:],
        "empty": b"",
    }


def model_seeds():
    base = {"model": "fz", "vendor": "Generic", "kind": "nvr", "channels": 4,
            "source_template":
                "rtsp://127.0.0.1:554/Streaming/Channels/{channel}01",
            "spool_dir": "/var/lib/c2d/spool", "spool_max_bytes": 8589934592,
            "segment_seconds": 10,
            "budget": {"cpu_percent": 20, "memory_kib": 65536}}

    def j(**kw):
        return json.dumps(dict(base, **kw), separators=(",", ":")).encode()

    seeds = {"nvr": json.dumps(base, indent=2).encode() + b"\n"}
    here = os.path.join(HERE, "..", "..", "firmware-configs")
    for name in sorted(os.listdir(here)):
        if name.endswith(".json") and name != "schema.json":
            with open(os.path.join(here, name)) as f:
                m = json.load(f)
            m["model"] = "fz"
            seeds["fw-" + name[:-5]] = json.dumps(m, indent=2).encode()
    seeds.update({
        "dashcam-dir": j(kind="dashcam", channels=2,
                         source_template="/mnt/sd/record/ch{channel}"),
        "two-placeholders": j(source_template="rtsp://h/{channel}/{channel}"),
        "max-channels": j(channels=64),
        "channels-65": j(channels=65),
        "other-name": j(model="generic-nvr-4ch"),
        "no-placeholder": j(source_template="rtsp://h/x"),
        "stray-brace": j(source_template="rtsp://h/{channel}}"),
        "relative": j(source_template="rec/{channel}"),
        "spool-relative": j(spool_dir="spool"),
        "kind-bad": j(kind="hvr"),
        "vendor-empty": j(vendor=""),
        "budget-missing": json.dumps({k: v for k, v in base.items()
                                      if k != "budget"}).encode(),
        "budget-range": j(budget={"cpu_percent": 101, "memory_kib": 1023}),
        "budget-unknown": j(budget={"cpu_percent": 1, "memory_kib": 1024,
                                    "x": 1}),
        "template-long": j(source_template="/" + "a" * 1100 + "{channel}"),
        "unknown-key": j(colour="red"),
        "syntax-error": b'{"model":"fz",}',
        "empty": b"",
    })
    return seeds


def identity_seeds():
    ok = {"device_id": "rec-1",
          "broker": {"host": "mq.example.net", "port": 8883}}

    def j(**kw):
        return json.dumps(dict(ok, **kw), separators=(",", ":")).encode()

    return {
        "ok": j(),
        "ok-pretty": json.dumps(ok, indent=2).encode(),
        "port-range": j(broker={"host": "h", "port": 0}),
        "port-fraction": j(broker={"host": "h", "port": 1.9}),
        "host-long": j(broker={"host": "h" * 255, "port": 1}),
        "host-too-long": j(broker={"host": "h" * 256, "port": 1}),
        "host-escapes": j(broker={"host": "a\u0000b\n", "port": 1}),
        "bad-device": j(device_id="a/b"),
        "device-64": j(device_id="d" * 64),
        "truncated": j()[:25],
        "zeros": bytes(64),
        "big": j() + b" " * 4100,
        "empty": b"",
    }


# fuzz_revoke_acl: a byte picking revoked ids (bit i: IDS[i] of
# tests/fuzz/fuzz_revoke_acl.c), then the ACL file as read back.
ACL_MARK = (b"# --- revoked devices: written by c2d-controller, do not edit "
            b"below ---")
ACL = (b"# c2d device listener ACL (c2d-ca)\n"
       b"user c2d-controller\ntopic readwrite c2d/v1/#\n\n"
       b"pattern write c2d/v1/d/%u/seg\npattern read c2d/v1/d/%u/ack\n"
       b"pattern read c2d/v1/d/%u/cfg\npattern readwrite c2d/v1/d/%u/state\n")


def deny(i):
    return b"user %s\ntopic deny c2d/v1/#\n\n" % [b"rec-1", b"cam-2"][i]


def revoke_acl_seeds():
    applied = ACL + ACL_MARK + b"\n" + deny(0) + deny(1)
    return {
        "fresh": b"\x01" + ACL,
        "fresh-none": b"\x00" + ACL,
        "applied": b"\x03" + applied,
        "applied-more": b"\xff" + applied,
        "applied-fewer": b"\x00" + applied,
        "no-newline": b"\x01" + ACL.rstrip(b"\n"),
        "mark-no-newline": b"\x01" + ACL + ACL_MARK,
        "mark-twice": b"\x01" + ACL + ACL_MARK + b"\n" + deny(0) + ACL_MARK +
                      b"\n",
        "mark-crlf": b"\x01" + ACL.replace(b"\n", b"\r\n") + ACL_MARK +
                     b"\r\n" + deny(0),
        "mark-indented": b"\x01" + ACL + b" " + ACL_MARK + b"\n",
        "mark-prefix": b"\x01" + ACL + ACL_MARK[:-3] + b"\n",
        "mark-first": b"\x02" + ACL_MARK + b"\n" + deny(1),
        "nul": b"\x01" + ACL[:10] + b"\0" + ACL[10:],
        "empty": b"\x01",
    }


TARGETS = {
    "fuzz_chunk": chunk_seeds,
    "fuzz_msg": msg_seeds,
    "fuzz_topic": topic_seeds,
    "fuzz_config": config_seeds,
    "fuzz_ingest": ingest_seeds,
    "fuzz_agent_config": agent_config_seeds,
    "fuzz_http": http_seeds,
    "fuzz_pair_answer": pair_answer_seeds,
    "fuzz_renew_answer": renew_answer_seeds,
    "fuzz_model": model_seeds,
    "fuzz_identity": identity_seeds,
    "fuzz_revoke_acl": revoke_acl_seeds,
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
