#!/usr/bin/python3
"""Writes the seed corpora in tests/fuzz/corpus/<target>/.

A handful of valid and invalid inputs per target, each small. Run it after
changing the seeds (`/usr/bin/python3 tests/fuzz/make_seeds.py`); it
rewrites only the seed-* files, so crash reproducers added to a corpus
after a fix (named crash-*) stay. Deterministic: same files every run.
"""
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


TARGETS = {
    "fuzz_chunk": chunk_seeds,
    "fuzz_msg": msg_seeds,
    "fuzz_topic": topic_seeds,
    "fuzz_config": config_seeds,
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
