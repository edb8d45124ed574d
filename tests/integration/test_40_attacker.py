"""40: the attacker suite (issue 6, "Security and bad input"; docs/security.md).

The production setup: `c2d-ca init` (device listener with mutual TLS and the
exact-topic ACL, pairing listener with acl-pairing, --pid-file), the real
mosquitto with its mosquitto.conf, a controller with the API, pairing ("pki")
and revocation, as test_31/test_33 set it up. Recorders rec-a (the attacker)
and rec-b (the victim) hold certificates signed by c2d-ca; SN-PAIR-0001 is
paired through a real code.

Every attack uses a real client: mosquitto_pub / mosquitto_sub (MQTT v5: the
broker's PUBACK/SUBACK reason codes come back as their output and exit
code), curl, or for what no client will send (U+0000 in a topic, plain TCP
on a TLS port) a raw socket. Each one gets the documented refusal, and
nothing changes: the ledger (segments, usage, fsck at the end), the victim's
topics (an observer with the controller's certificate sees nothing of the
attacker there), the API objects the attacker aimed at, and no file appears
outside the controller's and the broker's directories.

The flood from one device (the rate limit): test_40_attacker_flood.py."""

import json
import os
import socket
import ssl
import struct
import subprocess
import time

import pytest

from apiclient import Api, err
from c2dtest import (CONTROLLER_BIN, HOST, Cert, MqttClient, begin_msg, chunk_frame, end_msg,
                     run, snapshot_tree, start_ca_broker, wait_for)
from test_22_quota import DIST, DIST_PW, PW, outbox_link
from test_30_pki import PairClient, init
from test_31_pairing import SERIAL, pair
from test_33_unpair import RevPki, identity, story

S0 = 1764480000000000
MIB = 1 << 20


# ---- real clients -------------------------------------------------------------


def mpub(env, topic, payload, cert=None, client_id=None, port=None, tls=True, cafile=None):
    """mosquitto_pub -V mqttv5 -q 1 of the bytes payload (from a file: any
    byte). With cert on the device listener, without on the pairing one.
    Returns (exit code, stdout + stderr)."""
    f = env.dir / "payload.bin"
    f.write_bytes(payload if isinstance(payload, bytes) else payload.encode())
    args = ["mosquitto_pub", "-h", HOST, "-V", "mqttv5", "-q", "1", "-t", topic, "-f", f]
    if tls:
        args += ["--cafile", cafile or env.pki.ca]
    if cert:
        args += ["-p", port or env.pki.dev_port, "--cert", cert.crt, "--key", cert.key]
    else:
        args += ["-p", port or env.pki.pair_port]
    if client_id is not None:
        args += ["-i", client_id]
    r = subprocess.run([str(a) for a in args], capture_output=True, timeout=30)
    return r.returncode, (r.stdout + r.stderr).decode(errors="replace")


def denied(result):
    """mosquitto_pub's PUBACK "Not authorized" (MQTT v5 reason 0x87), or
    no connection at all."""
    rc, out = result
    return rc != 0 or "not authorized" in out.lower()


def msub(env, topics, cert=None, client_id=None, wait=3, during=None):
    """mosquitto_sub -V mqttv5 -v on topics for `wait` seconds while
    during() runs. Returns (exit code, what it printed, stderr)."""
    args = ["mosquitto_sub", "-h", HOST, "-V", "mqttv5", "-q", "1", "-v", "-W", str(wait),
            "--cafile", str(env.pki.ca)]
    if cert:
        args += ["-p", str(env.pki.dev_port), "--cert", str(cert.crt), "--key", str(cert.key)]
    else:
        args += ["-p", str(env.pki.pair_port)]
    args += ["-i", client_id or "sub-%d" % time.monotonic_ns()]
    for t in topics:
        args += ["-t", t]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.0)  # connected and subscribed
    if during:
        during()
    out, e = p.communicate(timeout=wait + 10)
    return p.returncode, out.decode(errors="replace"), e.decode(errors="replace")


def curl(env, method, path, token=None, body=None, raw=None, headers=(), path_as_is=True):
    """curl against the API. body: JSON-encoded; raw: bytes as they are.
    Returns (status, parsed JSON or None)."""
    args = ["curl", "-s", "-o", "-", "-w", "\n%{http_code}", "-X", method, "--max-time", "20"]
    if path_as_is:
        args.append("--path-as-is")
    if token:
        args += ["-H", "Authorization: Bearer " + token]
    for h in headers:
        args += ["-H", h]
    if body is not None:
        raw = json.dumps(body).encode()
    if raw is not None:
        f = env.dir / "body.bin"
        f.write_bytes(raw)
        args += ["-H", "Content-Type: application/json", "--data-binary", "@%s" % f]
    args.append("http://127.0.0.1:%d%s" % (env.s.port, path))
    r = subprocess.run(args, capture_output=True, timeout=30)
    txt, _, code = r.stdout.rpartition(b"\n")
    try:
        out = json.loads(txt) if txt.strip() else None
    except ValueError:
        out = {"_raw": txt[:200]}
    return int(code or 0), out


# ---- MQTT by hand: what no client sends ----------------------------------------


def _mqtt_str(b):
    return struct.pack(">H", len(b)) + b


def _mqtt_packet(first, body):
    n, rl = len(body), b""
    while True:
        d, n = n % 128, n // 128
        rl += bytes([d | (0x80 if n else 0)])
        if not n:
            return bytes([first]) + rl + body


def raw_mqtt(env, cert, client_id, topic_bytes, payload=b"x"):
    """Connects with TLS and cert (MQTT v5, by hand), publishes QoS 1 on
    topic_bytes as they are, and returns what the broker answered to the
    PUBLISH: b"" (it closed the connection) or the bytes it sent."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(env.pki.ca))
    ctx.load_cert_chain(str(cert.crt), str(cert.key))
    with socket.create_connection((HOST, env.pki.dev_port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(_mqtt_packet(0x10, _mqtt_str(b"MQTT") + bytes([5, 0x02]) + struct.pack(">H", 30)
                                   + b"\x00" + _mqtt_str(client_id.encode())))
            connack = s.recv(64)
            assert connack[:1] == b"\x20" and connack[3] == 0, connack  # accepted
            s.sendall(_mqtt_packet(0x32, _mqtt_str(topic_bytes) + b"\x00\x01" + b"\x00" + payload))
            got = b""
            try:
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    got += chunk
            except (socket.timeout, ssl.SSLError, ConnectionError):
                pass
            return got


# ---- the setup ---------------------------------------------------------------


class Env:
    """c2d-ca's PKI and broker, the controller of test_33's story (API,
    pairing, revocation), recorders rec-a and rec-b with certificates, an
    observer with the controller's certificate on c2d/v1/#."""

    def __init__(self, tmp_path):
        self.dir = tmp_path
        self.pki = RevPki(tmp_path / "ca")
        self.broker = start_ca_broker(self.pki.dir, [self.pki.dev_port, self.pki.pair_port],
                                      tmp_path / "mosquitto.log")
        wait_for(lambda: self.pki.pid_file.exists(), 5, "the broker's pid file")
        self.s = story(self.pki, tmp_path)
        self.ctl = self.s.ctl
        self.api = self.s.api
        site = self.s.rec["site_id"]
        self.rec = {}
        for dev in ("rec-a", "rec-b"):
            self.rec[dev] = self.s.ok("POST", "/api/v1/recorders", {
                "name": "NVR " + dev, "serial": "SN-" + dev, "model": "X8", "site_id": site,
                "channels": 2, "device_id": dev})
        self.a = self.pki.device("rec-a")
        self.b = self.pki.device("rec-b")
        self.observer = MqttClient(self.pki.as_broker(), self.pki.controller, "observer",
                                   subscribe=["c2d/v1/#"])
        # rec-b's own segment (the victim's data) and a working exchange
        self.upload(self.b, "rec-b", 1, S0, b"victim's video" * 100)
        self.observer.drain(0.5)
        self.work = tmp_path / "attacker"  # the test's own files
        self.work.mkdir()

    def upload(self, cert, dev, ch, start, data):
        c = MqttClient(self.pki.as_broker(), cert, "up-" + dev, subscribe=["c2d/v1/d/%s/ack" % dev])
        try:
            for p in (begin_msg(ch, start, data), chunk_frame(ch, start, 0, data), end_msg(ch, start)):
                c.publish("c2d/v1/d/%s/seg" % dev, p)
            wait_for(lambda: any(json.loads(m[1]).get("status") == "committed" for m in c.all), 20,
                     "%s's segment committed" % dev, on_timeout=self.ctl.diag)
        finally:
            c.close()

    def outside(self):
        """Files outside the controller's and the broker's directories."""
        return snapshot_tree(self.dir, exclude=[self.ctl.dir, self.pki.dir, self.work,
                                                self.dir / "mosquitto.log",
                                                self.dir / "payload.bin", self.dir / "body.bin"])

    def snapshot(self):
        recs = {d: self.s.ok("GET", "/api/v1/recorders/%d" % r["id"]) for d, r in self.rec.items()}
        recs["paired"] = self.s.ok("GET", "/api/v1/recorders/%d" % self.s.rec["id"])
        return {
            "segments": self.ctl.segments(),
            "usage": self.ctl.usage()["total_bytes"],
            "recorders": recs,
            "events": self.s.ok("GET", "/api/v1/events")["items"],
            "tree": self.outside(),
            "store": sorted(p.name for p in (self.ctl.data_dir / "store").iterdir()),
            "partial": sorted(str(p) for p in (self.ctl.data_dir / "partial").rglob("*")
                              if p.is_file()) if (self.ctl.data_dir / "partial").exists() else [],
        }

    def check_unchanged(self, before, what):
        after = self.snapshot()
        for k in before:
            assert after[k] == before[k], "%s changed %s:\nbefore %s\nafter  %s" % (
                what, k, before[k], after[k])
        assert self.ctl.alive(), "the controller died after %s\n%s" % (what, self.ctl.diag())

    def victim_untouched(self, quiet=1.0):
        """Nothing of the attacker's reached rec-b's topics."""
        got = [m for m in self.observer.drain(quiet) if m[0].startswith("c2d/v1/d/rec-b/")]
        assert got == [], got

    def fsck_clean(self):
        self.observer.close()
        self.ctl.stop()
        r = run([CONTROLLER_BIN, "fsck", "-c", self.ctl.conf, "--json", "--hashes"], check=False)
        j = json.loads(r.stdout)
        assert r.returncode == 0 and j["findings"] == [], r.stdout


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    yield e
    e.observer.close()


def acks_of(client, n_before=0):
    return [json.loads(p) for t, p in client.all[n_before:] if t.endswith("/ack")]


# ---- the device listener -------------------------------------------------------


@pytest.mark.timeout(300)
def test_device_cannot_reach_another_device(env):
    before = env.snapshot()
    env.observer.drain(0.5)
    a = env.a
    # publishing on rec-b's topics, and on topics nobody grants
    seg = begin_msg(1, S0 + 1, b"forged")
    for topic, payload in [("c2d/v1/d/rec-b/seg", seg), ("c2d/v1/d/rec-b/evt", b"{}"),
                           ("c2d/v1/d/rec-b/state", b'{"online":false}'),
                           ("c2d/v1/d/rec-b/csr", b'{"csr":"x"}'), ("c2d/v1/d/rec-b/ack", b"{}"),
                           ("c2d/v1/d/rec-b/cfg", b"{}"), ("c2d/v1/d/rec-a/ack", b"{}"),
                           ("c2d/v1/d/rec-a/cfg", b'{"v":1}'), ("c2d/v1/d/rec-a/cert", b"{}"),
                           ("c2d/v1/pair/SN-PAIR-0001/resp", b"{}"), ("c2d/v1/pair/x/req", b"{}"),
                           ("$SYS/broker/x", b"x"), ("c2d/v1/d/+/seg", seg), ("#", b"x")]:
        rc, out = mpub(env, topic, payload, cert=a, client_id="rec-a")
        assert denied((rc, out)), (topic, rc, out)
    env.victim_untouched()
    assert [m for m in env.observer.all if m[1] == seg] == []

    # reading: wildcards, $SYS, rec-b's topics. The broker lets the
    # subscriptions through (mosquitto checks read access per message) or
    # refuses them; either way nothing arrives while the controller and
    # rec-b talk, and $SYS (published every 10 s, retained) stays dark.
    def traffic():
        env.observer.publish("c2d/v1/d/rec-b/ack", b"for rec-b only")
        env.observer.publish("c2d/v1/d/rec-b/cfg", b"rec-b's config")
        env.observer.publish("c2d/v1/pair/SN-PAIR-0001/resp", b"for the pairing client")

    rc, out, e = msub(env, ["#", "$SYS/#", "c2d/v1/#", "c2d/v1/d/+/ack", "c2d/v1/d/rec-b/#",
                            "c2d/v1/pair/#", "$share/g/c2d/v1/d/#"], cert=a, during=traffic)
    assert out == "", out
    # the positive control: rec-b reads its own ack
    rc, out, e = msub(env, ["c2d/v1/d/rec-b/ack"], cert=env.b, during=traffic)
    assert "for rec-b only" in out, (rc, out, e)
    env.check_unchanged(before, "rec-a on rec-b's topics")


@pytest.mark.timeout(300)
def test_identity_attacks(env, tmp_path):
    """Revoked certificate, unknown CA, no certificate, plain TCP."""
    # a recorder pairs for real, then is unpaired: its certificate is revoked
    conf = env.s.agent("agent", [{"id": 1, "source": "/dev/null"}])
    got = env.s.code()
    pair(conf, got["code"])
    old = identity(tmp_path, "agent", got["device_id"])
    assert not denied(mpub(env, "c2d/v1/d/%s/state" % old.cn, '{"online":true}', cert=old))
    env.s.ok("DELETE", "/api/v1/recorders/%d/pairing" % env.s.rec["id"], want=(200,))
    wait_for(lambda: "user %s\n" % old.cn in (env.pki.dir / "acl").read_text(), 5, "the deny block")
    time.sleep(1.0)  # the broker reloads on SIGHUP
    before = env.snapshot()
    env.observer.drain(0.5)
    dev = old.cn
    for kind, payload in [("seg", begin_msg(1, S0, b"revoked")), ("evt", b"{}"),
                          ("state", b'{"online":true}'), ("csr", b'{"csr":"x"}')]:
        assert denied(mpub(env, "c2d/v1/d/%s/%s" % (dev, kind), payload, cert=old)), kind
    rc, out, e = msub(env, ["c2d/v1/d/%s/#" % dev], cert=old,
                      during=lambda: env.observer.publish("c2d/v1/d/%s/ack" % dev, b"late"))
    assert "late" not in out, out
    assert [m for m in env.observer.drain(1.0) if m[0].startswith("c2d/v1/d/%s/" % dev)
            and m[1] != b"late"] == []

    # a certificate from another CA (even with CN c2d-controller): no TLS
    other = env.work / "other-ca"
    init(other, 1, 2)
    stranger = Cert("c2d-controller", other / "controller.crt", other / "controller.key")
    rc, out = mpub(env, "c2d/v1/d/rec-b/seg", b"stranger", cert=stranger)
    assert rc != 0 and ("tls" in out.lower() or "error" in out.lower()), (rc, out)
    # the other CA as the client's trust anchor: the client refuses the broker
    rc, out = mpub(env, "c2d/v1/d/rec-a/seg", b"x", cert=env.a, cafile=other / "ca.crt")
    assert rc != 0, out
    # a self-signed certificate for rec-b's id
    key, crt = env.work / "self.key", env.work / "self.crt"
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", key, "-out", crt, "-subj", "/CN=rec-b", "-days", "1"])
    rc, out = mpub(env, "c2d/v1/d/rec-b/seg", b"self-signed", cert=Cert("rec-b", crt, key))
    assert rc != 0, out
    # TLS without a client certificate on the device listener
    rc, out = mpub(env, "c2d/v1/d/rec-b/seg", b"nocert", client_id="rec-b",
                   port=env.pki.dev_port)
    assert rc != 0, out
    # plain TCP to both TLS ports: mosquitto_pub, and a raw MQTT CONNECT
    for port in (env.pki.dev_port, env.pki.pair_port):
        rc, out = mpub(env, "c2d/v1/pair/S1/req", b"plain", client_id="S1", port=port, tls=False)
        assert rc != 0, out
        with socket.create_connection((HOST, port), timeout=5) as s:
            s.sendall(_mqtt_packet(0x10, _mqtt_str(b"MQTT") + bytes([5, 0x02, 0, 30, 0])
                                   + _mqtt_str(b"plain")))
            try:
                answer = s.recv(64)
            except (socket.timeout, ConnectionError):
                answer = b""
            assert answer[:1] != b"\x20", answer  # never a CONNACK
    env.victim_untouched()
    env.check_unchanged(before, "revoked / foreign / plain clients")
    env.fsck_clean()


@pytest.mark.timeout(300)
def test_bad_names_from_a_device(env):
    """Path traversal, NUL bytes, bad UTF-8 and overlong values in every name
    a device sends: channel numbers, segment starts, event ids and kinds,
    state fields, a CSR; U+0000 in the topic; oversize declared sizes."""
    before = env.snapshot()
    a = MqttClient(env.pki.as_broker(), env.a, "rec-a",
                   subscribe=["c2d/v1/d/rec-a/ack", "c2d/v1/d/rec-a/cert"])
    try:
        seg = "c2d/v1/d/rec-a/seg"
        good = {"v": 1, "t": "begin", "ch": 0, "start": S0, "dur": 1, "size": 10,
                "sha256": "0" * 64}
        bad_values = ["../x", "%2e%2e/%2e%2e/x", "/etc/passwd", "..", "0/../../x", "a\u0000b",
                      "1" * 5000, -1, 2 ** 64, 1.5, None, [], {}]
        cases = []
        for field in ("ch", "start", "size", "dur", "sha256", "t", "v"):
            for v in bad_values:
                cases.append(json.dumps(dict(good, **{field: v})).encode())
        # raw NUL bytes inside and after the JSON, bad UTF-8
        cases += [b'{"v":1,"t":"begin","ch":0\x00,"start":1}', json.dumps(good).encode() + b"\x00",
                  b"\x00" * 64, b'{"v":1,"t":"end","ch":0,"start":"\xff\xfe"}']
        # oversize declared sizes and frames
        cases += [json.dumps(dict(good, size=2 ** 53)).encode(),
                  json.dumps(dict(good, size=env.ctl.cfg["max_segment_bytes"] + 1)).encode(),
                  json.dumps(dict(good, ch=65535)).encode(),
                  chunk_frame(0, S0, 0, b"x" * 10, length=0xFFFFFFFF),
                  chunk_frame(0, S0, 2 ** 63 - 1, b"x" * 10),
                  chunk_frame(0, S0, 0, b"\0" * (MIB + 1))]
        n = len(a.all)
        for p in cases:
            a.publish(seg, p)
        ok_reasons = {"bad_json", "bad_field", "out_of_range", "unknown_type", "bad_length",
                      "truncated", "unsupported_version", "too_large", "bad_channel",
                      "unknown_segment"}
        wait_for(lambda: len(acks_of(a, n)) >= len(cases), 30, "an answer to each bad message",
                 on_timeout=lambda: "%d of %d: %s" % (len(acks_of(a, n)), len(cases),
                                                      acks_of(a, n)[-3:]))
        for ack in acks_of(a, n):
            assert ack["status"] == "rejected" and ack["reason"] in ok_reasons, ack
        # evt: ids, kinds, channels with traversal and NUL; oversize
        evt = {"v": 1, "type": "event", "id": "e-1", "at": int(time.time() * 1e6),
               "event": "harsh_brake"}
        for field, vals in [("id", ["../x", "/etc/passwd", "a\u0000", "%2e%2e", "x" * 65]),
                            ("event", ["../x", "A\u0000", "x" * 33]),
                            ("channel", ["../1", 0, 257]), ("severity", ["../x"])]:
            for v in vals:
                a.publish("c2d/v1/d/rec-a/evt", json.dumps(dict(evt, **{field: v})).encode())
        a.publish("c2d/v1/d/rec-a/evt", json.dumps(dict(evt, id="big", pad="x" * 5000)).encode())
        a.publish("c2d/v1/d/rec-a/evt", b'{"v":1,"type":"event\x00","id":"e-2"}')
        # state: NUL, bad UTF-8, a bad channel, over 32 KiB
        for p in [b'{"online":true,"disk":"ok\x00"}', b'{"online":true,"disk":"\xff"}',
                  b'{"online":true,"channels":[{"id":"../1","state":"recording"}]}',
                  b'{"online":true,"x":"' + b"y" * (33 * 1024) + b'"}']:
            a.publish("c2d/v1/d/rec-a/state", p)
        # csr: not a CSR, a CSR with another CN (traversal): bad_csr
        key, csr = env.pki.csr("../rec-b", "evil-csr")
        for p in [b'{"csr":"../../etc/passwd"}', b'{"csr":"\x00"}',
                  json.dumps({"csr": csr.read_text()}).encode()]:
            a.publish("c2d/v1/d/rec-a/csr", p)
        certs = wait_for(lambda: [json.loads(p) for t, p in a.all if t.endswith("/cert")] or None,
                         15, "an answer on rec-a's cert topic", on_timeout=env.ctl.diag)
        for c in certs:
            assert c["ok"] is False and c["error"] in ("bad_csr", "too_soon"), c
        time.sleep(1.0)
    finally:
        a.close()
    log = env.ctl.log_text()
    assert "evt refused" in log and "state refused" in log, env.ctl.diag()

    # U+0000 and bad UTF-8 in a topic: the broker disconnects (MQTT 5 1.5.4)
    for topic in [b"c2d/v1/d/rec-a/seg\x00/../x", b"c2d/v1/d/rec-a/\xff\xfe"]:
        answer = raw_mqtt(env, env.a, "rec-a-raw", topic)
        assert answer == b"" or answer[:1] == b"\xe0", answer  # closed, or DISCONNECT
        assert b"\x40" != answer[:1], answer  # never a PUBACK
    env.victim_untouched()
    env.check_unchanged(before, "bad names from rec-a")
    env.fsck_clean()


# ---- the pairing listener --------------------------------------------------------


@pytest.mark.timeout(300)
def test_pairing_client_attacks(env):
    st0 = env.s.pairing()
    code = env.s.code()["code"]
    st = env.s.pairing()
    before = env.snapshot()
    env.observer.drain(0.5)
    # outside its own topic: another serial, the answers, the device topics
    for cid, topic in [("SN-EVIL", "c2d/v1/pair/%s/req" % SERIAL),
                       ("SN-EVIL", "c2d/v1/pair/SN-EVIL/resp"),
                       ("SN-EVIL", "c2d/v1/d/rec-b/seg"), ("SN-EVIL", "c2d/v1/d/rec-b/state"),
                       ("SN-EVIL", "$SYS/x"), ("SN-EVIL", "#"), ("+", "c2d/v1/pair/+/req"),
                       ("#", "c2d/v1/pair/#"), ("../x", "c2d/v1/pair/x/req"),
                       ("../x", "c2d/v1/pair/../req")]:
        assert denied(mpub(env, topic, b'{"code":"x","csr":"y"}', client_id=cid)), (cid, topic)
    assert [m for m in env.observer.drain(1.0) if m[0] != "c2d/v1/pair/SN-EVIL/req"] == []
    # reading others' answers: subscribed to everything while the real
    # recorder pairs, the eavesdropper gets nothing
    conf = env.s.agent("agent", [{"id": 1, "source": "/dev/null"}])
    spy = PairClient(env.pki, "SN-EVIL", subscribe=["c2d/v1/pair/#", "#", "$SYS/#",
                                                    "c2d/v1/pair/%s/resp" % SERIAL])
    try:
        # serials the controller must not take (its own id, traversal, a '/'
        # that the broker grants as c2d/v1/pair/../x/req, outside the
        # controller's c2d/v1/pair/+/req): no answer, no audit
        for cid in ["..", "c2d-controller", "%2e%2e", "SN-\u00e9", "../x", "SN/../../x"]:
            mpub(env, "c2d/v1/pair/%s/req" % cid, '{"code":"2222-2222","csr":"x"}', client_id=cid)
        time.sleep(1.0)
        assert [m for m in env.observer.drain(0.5) if m[0].endswith("/resp")] == []
        resp = PairClient(env.pki, SERIAL, subscribe=["c2d/v1/pair/%s/resp" % SERIAL])
        try:
            n = 0
            # dropped without an answer: NUL, escapes, unknown fields, bad UTF-8
            for p in [b'{"code":"' + code.encode() + b'\x00","csr":"x"}',
                      json.dumps({"code": code + "\u0000", "csr": "x"}).encode(),
                      json.dumps({"code": code, "csr": "x", "serial": "../x"}).encode(),
                      b'{"code":"\xff","csr":"x"}', b'{"code":"' + b"A" * 70000 + b'"}']:
                resp.c.publish("c2d/v1/pair/%s/req" % SERIAL, p, qos=1)
            time.sleep(1.5)
            assert resp.all == [], resp.all
            assert env.s.pairing() == st, (env.s.pairing(), st)
            # the right code with a CSR for another name: bad_csr, code kept
            for cn in ["../" + SERIAL, SERIAL + "/../x", "rec-b"]:
                key, csr = env.pki.csr(cn, "pair-%d" % n)
                n += 1
                resp.c.publish("c2d/v1/pair/%s/req" % SERIAL,
                               json.dumps({"code": code, "csr": csr.read_text()}), qos=1)
            wait_for(lambda: len(resp.all) == 3, 10, "three answers")
            assert [json.loads(p) for _, p in resp.all] == [{"ok": False, "error": "bad_csr"}] * 3
            assert env.s.pairing() == st, (env.s.pairing(), st)
        finally:
            resp.close()
        # then the real recorder pairs with the code: it was not consumed
        pair(conf, code)
        time.sleep(1.0)
        assert spy.all == [], spy.all
    finally:
        spy.close()
    assert st0["state"] == "none" and env.s.pairing()["state"] == "paired"
    env.victim_untouched()
    before["recorders"].pop("paired")  # it did pair: that one changed
    before["tree"] = {k: v for k, v in before["tree"].items() if not k.startswith("agent")}
    after = env.snapshot()
    after["tree"] = {k: v for k, v in after["tree"].items() if not k.startswith("agent")}
    for k in before:
        assert after[k] == before[k] if k != "recorders" else all(
            after[k][d] == before[k][d] for d in before[k]), k


# ---- the API ----------------------------------------------------------------------

TRAVERSALS = ["../../../../etc/passwd", "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/etc/passwd",
              "..\\..\\windows", "store/rec-b/1", "NVR\u00e9 ../x"]


@pytest.mark.timeout(300)
def test_api_names_paths_and_queries(env):
    """Names with traversal are names (stored as given, no file made);
    NUL, overlong and control characters are refused; path parameters and
    query strings with traversal, %00 and junk never leave the API."""
    tok = env.s.tok
    rec_b = env.rec["rec-b"]
    site = rec_b["site_id"]
    client = env.s.ok("GET", "/api/v1/sites/%d" % site)["client_id"]
    before_tree = env.outside()
    before_store = sorted(str(p) for p in env.ctl.data_dir.rglob("*"))
    made = 0
    creates = [
        ("/api/v1/clients", lambda v: {"name": v, "email": "c%d@example.com" % made}),
        ("/api/v1/sites", lambda v: {"name": v, "client_id": client}),
        ("/api/v1/recorders", lambda v: {"name": v, "serial": "SN-T%d" % made, "model": v,
                                         "site_id": site}),
        ("/api/v1/geofences", lambda v: {"name": v, "shape": {
            "type": "circle", "center": {"lat": 48.0, "lon": 2.0}, "radius_m": 100}}),
        ("/api/v1/groups", lambda v: {"name": v}),
        ("/api/v1/drivers", lambda v: {"name": v}),
    ]
    for path, body in creates:
        for v in TRAVERSALS:
            made += 1
            st, out = curl(env, "POST", path, tok, body(v))
            assert st in (201, 422), (path, v, st, out)
            if st == 201:
                assert out["name"] == v, out  # stored as given
            else:
                assert err(out) in ("invalid_field", "missing_field", "unknown_field"), out
        for v, code in [("a\u0000b", "bad_json"), ("x" * 5000, "invalid_field"),
                        ("a\x01b", "invalid_field")]:
            made += 1
            st, out = curl(env, "POST", path, tok, body(v))
            assert err(out) == code and st in (400, 422), (path, v[:10], st, out)
    # emails with traversal and NUL; device ids and serials
    for v in ["../x@example.com", "a@../../etc", "x\u0000@example.com"]:
        st, out = curl(env, "POST", "/api/v1/clients", tok, {"name": "C", "email": v})
        assert st in (201, 400, 422), (v, st, out)
    for v in ["../rec-b", "/etc/passwd", "rec-b/seg", "rec-b\u0000", "..", ".hidden", "-rf",
              "%2e%2e", "x" * 65, "c2d-controller", "C2D-x", "rec b", ""]:
        st, out = curl(env, "PUT", "/api/v1/recorders/%d" % env.rec["rec-a"]["id"], tok,
                       {"device_id": v})
        assert st in (400, 422) and err(out) in ("invalid_field", "bad_json"), (v, st, out)
    for v in ["../SN-PAIR-0001", "SN\u0000", "x" * 5000]:
        st, out = curl(env, "POST", "/api/v1/recorders", tok,
                       {"name": "R", "serial": v, "model": "X", "site_id": site})
        assert st in (201, 400, 422), (v, st, out)
    # path parameters
    ch = env.s.ok("GET", "/api/v1/channels?recorder_id=%d" % rec_b["id"])["items"][0]["id"]
    for path in ["/api/v1/recorders/..%2f..%2fetc%2fpasswd", "/api/v1/recorders/1%00",
                 "/api/v1/recorders/../../../etc/passwd", "/api/v1/../../etc/passwd",
                 "/api/v1/channels/%d/segments/..%%2f..%%2f..%%2fetc%%2fpasswd" % ch,
                 "/api/v1/channels/%d/segments/%d%%00.ts" % (ch, S0),
                 "/api/v1/channels/%d/segments/-1" % ch,
                 "/api/v1/channels/%d/segments/99999999999999999999999" % ch,
                 "/api/v1/play/..%2f..%2fetc%2fpasswd/playlist.m3u8",
                 "/api/v1/play/x/..%2f..%2f..%2fetc%2fpasswd",
                 "/api/v1/play/x/%2e%2e", "/api/v1/channels/%d/recordings%%00" % ch,
                 "/api/v1/recorders/%d/state/../../../x" % rec_b["id"]]:
        st, out = curl(env, "GET", path, tok)
        assert st in (400, 401, 404, 422), (path, st, out)
        assert b"root:" not in json.dumps(out).encode(), (path, out)
    # download names: a real playback token of rec-b's channel, then
    # traversal and NUL in the segment name after it
    url = env.s.ok("POST", "/api/v1/channels/%d/playback" % ch,
                   {"from": "2025-11-30T05:00:00Z", "to": "2025-11-30T06:00:00Z"})["url"]
    base = url[url.index("/api/v1/play/"):].rsplit("/", 1)[0]
    assert curl(env, "GET", base + "/playlist.m3u8")[0] == 200
    assert curl(env, "GET", base + "/%d.ts" % S0)[0] == 200
    for name in ["..%2f..%2f..%2fetc%2fpasswd", "../../../../etc/passwd", "%2e%2e",
                 "%d.ts%%00" % S0, "%d%%00.ts" % S0, "..%%2f%d.ts" % S0, "-1.ts",
                 "%2fetc%2fpasswd", "x" * 5000]:
        st, out = curl(env, "GET", base + "/" + name)
        assert st in (400, 404, 414), (name, st, out)
    # query strings
    for q in ["/api/v1/recorders?after=../x", "/api/v1/recorders?name=%00",
              "/api/v1/recorders?name=..%2f..%2f", "/api/v1/recorders?limit=99999999999999",
              "/api/v1/events?recorder_id=1%00", "/api/v1/alarms?recorder_id=../1",
              "/api/v1/channels/%d/recordings?from=../../x&to=/etc/passwd" % ch,
              "/api/v1/channels/%d/export.mp4?from=%%2e%%2e&to=%%00" % ch,
              "/api/v1/channels/%d/playlist.m3u8?from=-1&to=99999999999999999999" % ch]:
        st, out = curl(env, "GET", q, tok)
        assert st in (200, 400, 404, 422), (q, st, out)
        if st == 200:
            assert "items" in out and "next_after" in out, (q, out)  # a plain filter: no match
    # an oversize body declared, never sent; a body over body_max
    st, out = curl(env, "POST", "/api/v1/clients", tok, headers=["Content-Length: 99999999999"],
                   raw=b"{}")
    assert st in (400, 413), (st, out)
    st, out = curl(env, "POST", "/api/v1/clients", tok,
                   raw=json.dumps({"name": "x" * 70000, "email": "big@example.com"}).encode())
    assert st == 413 and err(out) == "payload_too_large", (st, out)
    # nothing of all that reached the disk outside the controller, nor its store
    assert env.outside() == before_tree
    after_store = sorted(str(p) for p in env.ctl.data_dir.rglob("*"))
    assert [p for p in set(after_store) - set(before_store)
            if "/store/" in p or "/partial/" in p or ".." in p] == []
    assert env.ctl.alive()


@pytest.mark.timeout(300)
def test_api_across_tenants_and_sessions(env):
    dist = env.api.token(DIST, DIST_PW)
    env.api.ok("POST", "/api/v1/installers", {"name": "Rival", "email": "rival@example.com"},
               token=dist)
    env.api.ok("POST", "/api/v1/set-password",
               {"token": outbox_link(env.ctl, "rival@example.com"), "password": PW})
    rival = env.api.token("rival@example.com", PW)
    rec_b = env.rec["rec-b"]
    ch = env.s.ok("GET", "/api/v1/channels?recorder_id=%d" % rec_b["id"])["items"][0]["id"]
    before = env.snapshot()
    audit = env.s.ok("GET", "/api/v1/audit")
    for method, path, body in [
            ("GET", "/api/v1/recorders/%d" % rec_b["id"], None),
            ("PUT", "/api/v1/recorders/%d" % rec_b["id"], {"name": "mine"}),
            ("DELETE", "/api/v1/recorders/%d" % rec_b["id"], None),
            ("POST", "/api/v1/recorders/%d/pairing-code" % rec_b["id"], None),
            ("DELETE", "/api/v1/recorders/%d/pairing" % rec_b["id"], None),
            ("GET", "/api/v1/recorders/%d/state" % rec_b["id"], None),
            ("GET", "/api/v1/alarms?recorder_id=%d" % rec_b["id"], None),
            ("GET", "/api/v1/channels/%d" % ch, None),
            ("PUT", "/api/v1/channels/%d" % ch, {"cloud_backup": False}),
            ("GET", "/api/v1/channels/%d/recordings" % ch, None),
            ("GET", "/api/v1/channels/%d/segments/%d" % (ch, S0), None),
            ("GET", "/api/v1/channels/%d/playlist.m3u8" % ch, None),
            ("GET", "/api/v1/channels/%d/export.mp4" % ch, None),
            ("POST", "/api/v1/channels/%d/playback" % ch, {"from": "2025-11-30T05:00:00Z",
                                                            "to": "2025-11-30T06:00:00Z"}),
            ("GET", "/api/v1/sites/%d" % rec_b["site_id"], None),
            ("DELETE", "/api/v1/sites/%d" % rec_b["site_id"], None),
            ("POST", "/api/v1/recorders", {"name": "x", "serial": "SN-R", "model": "X",
                                           "site_id": rec_b["site_id"]})]:
        st, out = curl(env, method, path, rival, body)
        assert st in (404, 422), (method, path, st, out)
        assert err(out) in ("not_found", "invalid_field"), (method, path, out)
    # the rival's list of recorders is empty; rec-b's segment is still served to its owner
    assert curl(env, "GET", "/api/v1/recorders", rival)[1]["items"] == []
    env.check_unchanged(before, "the rival installer's calls")
    now = env.s.ok("GET", "/api/v1/audit")["items"]
    assert now == audit["items"], [x for x in now if x not in audit["items"]]
    st, _ = curl(env, "GET", "/api/v1/channels/%d/segments/%d" % (ch, S0), env.s.tok)
    assert st == 200, st

    # sessions: forged, logged out, expired (absolute expiry set to 2 s)
    # the real token with its last character changed (never to itself)
    forged = env.s.tok[:-1] + ("B" if env.s.tok.endswith("A") else "A")
    for bad in ["x" * 43, "A" * 43, "", "../../etc/passwd", forged, "\u00e9" * 10]:
        st, out = curl(env, "GET", "/api/v1/me", bad)
        assert st in (400, 401), (bad, st, out)
    t = env.api.token("installer@example.com", PW)
    env.api.ok("DELETE", "/api/v1/session", token=t, want=(204,))
    st, out = curl(env, "GET", "/api/v1/recorders", t)
    assert st == 401 and err(out) == "invalid_token", (st, out)
    env.ctl.stop()
    env.ctl.cfg["http"]["session_max_s"] = 2
    env.ctl.conf.write_text(json.dumps(env.ctl.cfg, indent=2))
    env.ctl.start()
    wait_for(lambda: curl(env, "GET", "/api/v1/me", env.s.tok)[0] in (200, 401), 20, "the API")
    t = env.api.token("installer@example.com", PW)
    assert curl(env, "GET", "/api/v1/me", t)[0] == 200
    time.sleep(3)
    st, out = curl(env, "DELETE", "/api/v1/recorders/%d" % rec_b["id"], t)
    assert st == 401 and err(out) == "session_expired", (st, out)
    st, out = curl(env, "GET", "/api/v1/me", t)
    assert st == 401 and err(out) == "invalid_token", (st, out)  # and it is gone
    t = env.api.token("installer@example.com", PW)
    st, out = curl(env, "GET", "/api/v1/recorders/%d" % rec_b["id"], t)
    assert st == 200 and out == before["recorders"]["rec-b"], (st, out)
    env.fsck_clean()
