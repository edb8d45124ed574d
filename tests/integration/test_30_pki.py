"""30: the PKI that c2d-ca makes, with the real mosquitto (docs/pki.md).

`c2d-ca init` writes a root and an issuing CA, the broker's and the
controller's certificates and a mosquitto.conf with two listeners on free
loopback ports: the device listener (mutual TLS, CN = username, exact-topic
ACL) and the pairing listener (server-authenticated TLS, anonymous, each
client limited to c2d/v1/pair/<its client id>/req|resp). `c2d-ca sign`
makes device certificates from CSRs made with the openssl CLI. Publishing is
done with the real mosquitto_pub; a client with the controller's certificate
observes what did and did not arrive.

Helpers of its own (c2dtest has none for these): PairClient, an anonymous
paho client without a certificate, and a stand-in for c2dtest.Broker so that
c2dtest.MqttClient connects to the device listener."""

import calendar
import os
import re
import ssl
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from c2dtest import (BUILD_DIR, HOST, Cert, MqttClient, free_port, run, start_ca_broker,
                     wait_for)

CA_BIN = BUILD_DIR / "tools" / "c2d-ca"
KEYS = ["ca.key", "issuing.key", "broker.key", "controller.key"]
CERTS = ["ca.crt", "issuing.crt", "chain.crt", "broker.crt", "controller.crt"]
OTHER = ["acl", "acl-pairing", "mosquitto.conf"]


def ca(*args, check=True):
    return run([CA_BIN] + [str(a) for a in args], check=check)


def show(path):
    out = ca("show", path).stdout.decode()
    return dict(line.split("=", 1) for line in out.splitlines())


def init(d, dev_port, pair_port, *extra, check=True):
    args = ["init", "--dir", d, "--broker-name", "localhost", "--broker-ip", "127.0.0.1",
            "--device-port", dev_port, "--pairing-port", pair_port] + list(extra)
    if os.geteuid() == 0:
        # mosquitto started as root drops to user "mosquitto", which could
        # not read the 0600 keys we own
        args += ["--mosquitto-user", "root"]
    return ca(*args, check=check)


class Pki:
    """A directory made by c2d-ca init, with device certificates on demand."""

    def __init__(self, d):
        self.dir = Path(d)
        self.dev_port = free_port()
        self.pair_port = free_port()
        while self.pair_port == self.dev_port:
            self.pair_port = free_port()
        init(self.dir, self.dev_port, self.pair_port)
        self.ca = self.dir / "ca.crt"
        self.controller = Cert("c2d-controller", self.dir / "controller.crt",
                               self.dir / "controller.key")
        self._devices = {}

    def csr(self, cn, stem):
        key = self.dir / (stem + ".key")
        csr = self.dir / (stem + ".csr")
        run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", key, "-subj", "/CN=" + re.sub(r"([/+=\\])", r"\\\1", cn),
             "-out", csr])
        return key, csr

    def device(self, dev_id):
        if dev_id not in self._devices:
            key, csr = self.csr(dev_id, "dev-" + dev_id)
            crt = self.dir / ("dev-" + dev_id + ".crt")
            ca("sign", "--ca-dir", self.dir, "--csr", csr, "--device-id", dev_id,
               "--days", 30, "--out", crt)
            self._devices[dev_id] = Cert(dev_id, crt, key)
        return self._devices[dev_id]

    def as_broker(self):
        """What c2dtest.MqttClient needs of a Broker: the device port and CA."""
        return SimpleNamespace(port=self.dev_port, pki=SimpleNamespace(ca=self.ca))


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return Pki(tmp_path_factory.mktemp("c2d-ca"))


@pytest.fixture
def broker(pki, tmp_path):
    """mosquitto -c DIR/mosquitto.conf, exactly as c2d-ca wrote it."""
    p = start_ca_broker(pki.dir, [pki.dev_port, pki.pair_port], tmp_path / "mosquitto.log")
    yield p
    p.kill9()


@pytest.fixture
def observer(pki, broker):
    """The controller's certificate, subscribed to everything under c2d/v1."""
    o = MqttClient(pki.as_broker(), pki.controller, "observer", subscribe=["c2d/v1/#"])
    yield o
    o.close()


def pub(pki, topic, payload, cert=None, client_id=None, username=None, port=None, tls=True):
    """mosquitto_pub (MQTT v5, QoS 1): with cert on the device listener,
    without one on the pairing listener. Returns (rc, stderr)."""
    args = ["mosquitto_pub", "-h", HOST, "-V", "mqttv5", "-q", "1", "-t", topic, "-m", payload]
    if tls:
        args += ["--cafile", pki.ca]
    if cert:
        args += ["-p", port or pki.dev_port, "--cert", cert.crt, "--key", cert.key]
    else:
        args += ["-p", port or pki.pair_port]
    if client_id is not None:
        args += ["-i", client_id]
    if username is not None:
        args += ["-u", username]
    r = subprocess.run([str(a) for a in args], capture_output=True, timeout=30)
    return r.returncode, r.stderr.decode(errors="replace")


def refused(result):
    rc, err = result
    return rc != 0 or "not authorized" in err.lower()


class PairClient:
    """An anonymous MQTT v5 client on the pairing listener: TLS that checks
    the broker against ca.crt, no client certificate. Keeps what it receives
    and the reason codes of its subscriptions."""

    def __init__(self, pki, client_id, subscribe=(), username=None, timeout=10):
        import paho.mqtt.client as mqtt
        self.all = []
        self.granted = {}
        self._connected = threading.Event()
        self._subacks = 0
        self._lock = threading.Lock()
        self.connect_rc = None
        c = mqtt.Client(client_id=client_id, protocol=mqtt.MQTTv5)
        c.tls_set_context(ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki.ca)))
        if username:
            c.username_pw_set(username)
        c.on_connect = self._on_connect
        c.on_message = lambda cl, u, m: self.all.append((m.topic, bytes(m.payload)))
        c.on_subscribe = self._on_subscribe
        self.c = c
        c.connect(HOST, pki.pair_port, keepalive=30, clean_start=True)
        c.loop_start()
        if not self._connected.wait(timeout):
            self.close()
            raise AssertionError("pairing connect as %r: rc=%s" % (client_id, self.connect_rc))
        self._mids = {}
        for t in subscribe:
            rc, mid = c.subscribe(t, qos=1)
            self._mids[mid] = t
        wait_for(lambda: self._subacks == len(subscribe), timeout, "SUBACKs for %r" % client_id)

    def _on_connect(self, client, userdata, flags, rc, properties=None):
        self.connect_rc = rc
        if rc == 0:
            self._connected.set()

    def _on_subscribe(self, client, userdata, mid, granted, properties=None):
        with self._lock:
            self.granted[mid] = [int(getattr(g, "value", g)) for g in granted]
            self._subacks += 1

    def close(self):
        try:
            self.c.disconnect()
        except Exception:
            pass
        self.c.loop_stop()


# ---- files and the command line --------------------------------------------


def test_init_files(pki, tmp_path):
    for name in KEYS:
        assert (pki.dir / name).stat().st_mode & 0o777 == 0o600, name
    for name in CERTS + OTHER:
        assert (pki.dir / name).stat().st_mode & 0o777 == 0o644, name
    root, iss = show(pki.dir / "ca.crt"), show(pki.dir / "issuing.crt")
    assert root["ca"] == "true" and iss["ca"] == "true"
    assert show(pki.dir / "broker.crt")["cn"] == "localhost"
    ctl = show(pki.dir / "controller.crt")
    assert ctl["cn"] == "c2d-controller" and ctl["ca"] == "false"
    assert len({root["serial"], iss["serial"], ctl["serial"]}) == 3
    # the chain as openssl sees it: root -> issuing -> leaf
    run(["openssl", "verify", "-CAfile", pki.dir / "ca.crt", "-untrusted", pki.dir / "issuing.crt",
         pki.dir / "controller.crt", pki.dir / "broker.crt"])
    run(["openssl", "verify", "-purpose", "sslserver", "-CAfile", pki.dir / "ca.crt",
         "-untrusted", pki.dir / "issuing.crt", "-verify_hostname", "localhost",
         pki.dir / "broker.crt"])
    r = run(["openssl", "verify", "-purpose", "sslclient", "-CAfile", pki.dir / "ca.crt",
             "-untrusted", pki.dir / "issuing.crt", pki.dir / "broker.crt"], check=False)
    assert r.returncode != 0  # a server certificate is no client certificate
    conf = (pki.dir / "mosquitto.conf").read_text()
    assert "listener %d 127.0.0.1\n" % pki.dev_port in conf
    assert "listener %d 127.0.0.1\n" % pki.pair_port in conf
    assert "per_listener_settings true\n" in conf


def test_init_never_overwrites_without_force(tmp_path):
    d = tmp_path / "ca"
    init(d, 18883, 18884)
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    r = init(d, 18883, 18884, check=False)
    assert r.returncode == 1 and b"exists" in r.stderr and len(r.stderr.splitlines()) == 1
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before
    # a single existing file is enough to refuse, and nothing is written
    (d / "ca.crt").unlink()
    keep = d / "ca.key"
    r = init(d, 18883, 18884, check=False)
    assert r.returncode == 1 and not (d / "ca.crt").exists()
    assert keep.read_bytes() == before["ca.key"]
    # --force replaces all of them
    init(d, 18883, 18884, "--force")
    after = {p.name: p.read_bytes() for p in d.iterdir()}
    assert set(after) == set(before) | {"ca.crt"}
    for name in KEYS + CERTS:
        assert after[name] != before.get(name), name
    assert (d / "ca.key").stat().st_mode & 0o777 == 0o600
    assert not [p for p in d.iterdir() if ".tmp" in p.name]


def test_bad_usage_exits_2(tmp_path):
    for args in [[], ["frobnicate"], ["init"], ["init", "--dir", tmp_path / "x"],
                 ["init", "--dir", tmp_path / "x", "--broker-name", "bad name"],
                 ["init", "--dir", tmp_path / "x", "--broker-name", "b", "--broker-ip", "1.2.3"],
                 ["init", "--dir", tmp_path / "x", "--broker-name", "b", "--device-port", "0"],
                 ["init", "--dir", tmp_path / "x", "--broker-name", "b", "--device-port", "9",
                  "--pairing-port", "9"],
                 ["sign", "--ca-dir", tmp_path], ["sign", "--days", "826"], ["show"],
                 ["show", "a", "b"]]:
        r = ca(*args, check=False)
        assert r.returncode == 2, (args, r.stderr)
        assert len(r.stderr.decode().splitlines()) == 1, r.stderr
    assert not (tmp_path / "x").exists()


def test_sign(pki, tmp_path):
    key, csr = pki.csr("rec-7", "sign-rec-7")
    out = tmp_path / "rec-7.crt"
    ca("sign", "--ca-dir", pki.dir, "--csr", csr, "--device-id", "rec-7", "--days", 10,
       "--out", out)
    info = show(out)
    assert info["cn"] == "rec-7" and info["ca"] == "false"
    assert len(info["serial"]) >= 30
    not_after = calendar.timegm(time.strptime(info["not_after"], "%Y-%m-%dT%H:%M:%SZ"))
    assert abs(not_after - (time.time() + 10 * 86400)) < 120
    run(["openssl", "verify", "-purpose", "sslclient", "-CAfile", pki.ca, "-untrusted",
         pki.dir / "issuing.crt", out])
    # the output is not overwritten without --force
    r = ca("sign", "--ca-dir", pki.dir, "--csr", csr, "--device-id", "rec-7", "--out", out,
           check=False)
    assert r.returncode == 1 and b"exists" in r.stderr
    assert show(out)["serial"] == info["serial"]
    ca("sign", "--ca-dir", pki.dir, "--csr", csr, "--device-id", "rec-7", "--out", out, "--force")
    assert show(out)["serial"] != info["serial"]
    # refused: a CN that is not the id, and ids outside the safe alphabet
    # (the CSR's CN equal to the id, so the id check is what refuses)
    r = ca("sign", "--ca-dir", pki.dir, "--csr", csr, "--device-id", "rec-8", "--out",
           tmp_path / "x.crt", check=False)
    assert r.returncode == 1 and b"not the device id" in r.stderr, r.stderr
    for i, bad in enumerate(["rec-b/seg", "rec+", "rec#", "c2d-controller", "-rec", "a" * 64 + "b"]):
        # openssl refuses a CN over 64 characters: that one signs rec-7's CSR
        bcsr = pki.csr(bad, "bad-%d" % i)[1] if len(bad) <= 64 else csr
        r = ca("sign", "--ca-dir", pki.dir, "--csr", bcsr, "--device-id", bad, "--out",
               tmp_path / "x.crt", check=False)
        assert r.returncode == 1 and b"[A-Za-z0-9_.-]" in r.stderr, (bad, r.stderr)
        assert len(r.stderr.splitlines()) == 1
    assert not (tmp_path / "x.crt").exists()


# ---- the broker ----------------------------------------------------------------


def test_plain_tcp_and_missing_certificate_fail(pki, broker, observer, tmp_path):
    for port in (pki.dev_port, pki.pair_port):
        rc, err = pub(pki, "c2d/v1/pair/S1/req", "plain", client_id="S1", port=port, tls=False)
        assert rc != 0, err
    # TLS without a client certificate on the device listener
    rc, err = pub(pki, "c2d/v1/pair/S1/req", "nocert", client_id="S1", port=pki.dev_port)
    assert rc != 0, err
    # a certificate of another CA on the device listener
    other = tmp_path / "other-ca"
    init(other, 1, 2)
    stranger = Cert("c2d-controller", other / "controller.crt", other / "controller.key")
    rc, err = pub(pki, "c2d/v1/d/rec-a/cfg", "stranger", cert=stranger)
    assert rc != 0, err
    assert observer.drain(1.0) == []


def test_device_reaches_only_its_own_topics(pki, broker, observer):
    a, b = pki.device("rec-a"), pki.device("rec-b")
    # own topics, in the direction the ACL grants
    for kind in ("seg", "state", "evt"):
        assert not refused(pub(pki, "c2d/v1/d/rec-a/" + kind, kind, cert=a))
        assert observer.get(5) == ("c2d/v1/d/rec-a/" + kind, kind.encode())
    # another device's topics, own topics the wrong way, pairing, elsewhere
    for topic in ["c2d/v1/d/rec-b/seg", "c2d/v1/d/rec-b/state", "c2d/v1/d/rec-b/evt",
                  "c2d/v1/d/rec-a/ack", "c2d/v1/d/rec-a/cfg", "c2d/v1/d/rec-a",
                  "c2d/v1/d/rec-a/seg/x", "c2d/v1/pair/rec-a/req", "c2d/v1/x"]:
        assert refused(pub(pki, topic, "intruder", cert=a)), topic
    assert observer.drain(1.5) == []

    # reading: A subscribes to B's topics and to wildcards; only its own arrive
    ra = MqttClient(pki.as_broker(), a, "rec-a", subscribe=[
        "c2d/v1/d/rec-a/ack", "c2d/v1/d/rec-b/ack", "c2d/v1/d/+/ack", "c2d/v1/d/#", "#"])
    rb = MqttClient(pki.as_broker(), b, "rec-b", subscribe=["c2d/v1/d/rec-b/ack"])
    ctl = MqttClient(pki.as_broker(), pki.controller, "controller")
    try:
        ctl.publish("c2d/v1/d/rec-b/ack", b"for-b")
        ctl.publish("c2d/v1/d/rec-a/ack", b"for-a")
        assert rb.get(5) == ("c2d/v1/d/rec-b/ack", b"for-b")  # positive control
        wait_for(lambda: ("c2d/v1/d/rec-a/ack", b"for-a") in ra.all, 5, "rec-a's own ack")
        time.sleep(1)
        assert {m for m in ra.all} == {("c2d/v1/d/rec-a/ack", b"for-a")}, ra.all
    finally:
        for c in (ra, rb, ctl):
            c.close()


def test_pairing_client_reaches_only_its_serial(pki, broker, observer):
    # its own request topic reaches the controller
    assert not refused(pub(pki, "c2d/v1/pair/S1/req", "hello", client_id="S1"))
    assert observer.get(5) == ("c2d/v1/pair/S1/req", b"hello")
    # anything else is refused: another serial, its own resp, device topics,
    # and claiming the controller's username gives nothing either
    for topic, user in [("c2d/v1/pair/S2/req", None), ("c2d/v1/pair/S1/resp", None),
                        ("c2d/v1/pair/S1", None), ("c2d/v1/d/rec-a/ack", None),
                        ("c2d/v1/d/rec-a/cfg", "c2d-controller"),
                        ("c2d/v1/pair/S2/req", "c2d-controller"), ("c2d/v1/x", None)]:
        assert refused(pub(pki, topic, "intruder", client_id="S1", username=user)), topic
    # client ids with MQTT's special characters: "S2/x" gets c2d/v1/pair/S2/x/req
    # (never S2's own topics); "+" and "#" get nothing at all
    for cid, topic in [("S2/x", "c2d/v1/pair/S2/req"), ("S2/req", "c2d/v1/pair/S2/req"),
                       ("+", "c2d/v1/pair/S2/req"), ("+", "c2d/v1/pair/+/req"),
                       ("#", "c2d/v1/pair/S2/req"), ("#", "c2d/v1/pair/#/req")]:
        assert refused(pub(pki, topic, "intruder", client_id=cid)), (cid, topic)
    assert observer.drain(1.5) == []
    # an empty client id is refused at connect (allow_zero_length_clientid false)
    rc, err = pub(pki, "c2d/v1/pair/x/req", "anon", client_id="")
    assert rc != 0

    # reading: S1 subscribes to its own resp, to S2's and to wildcards
    s1 = PairClient(pki, "S1", subscribe=["c2d/v1/pair/S1/resp", "c2d/v1/pair/S2/resp",
                                          "c2d/v1/pair/+/resp", "c2d/v1/pair/#", "#"])
    s2 = PairClient(pki, "S2", subscribe=["c2d/v1/pair/S2/resp"])
    plus = PairClient(pki, "+", subscribe=["c2d/v1/pair/+/resp"])
    slash = PairClient(pki, "S2/resp", subscribe=["c2d/v1/pair/S2/resp"])
    ctl = MqttClient(pki.as_broker(), pki.controller, "controller")
    try:
        ctl.publish("c2d/v1/d/rec-a/cfg", b"device-cfg")
        ctl.publish("c2d/v1/pair/S2/resp", b"for-S2")
        ctl.publish("c2d/v1/pair/S1/resp", b"for-S1")
        wait_for(lambda: ("c2d/v1/pair/S2/resp", b"for-S2") in s2.all, 5, "S2's resp")
        wait_for(lambda: ("c2d/v1/pair/S1/resp", b"for-S1") in s1.all, 5, "S1's resp")
        time.sleep(1)
        assert set(s1.all) == {("c2d/v1/pair/S1/resp", b"for-S1")}, s1.all
        assert plus.all == [] and slash.all == [], (plus.all, slash.all)
    finally:
        for c in (s1, s2, plus, slash, ctl):
            c.close()


def test_controller_reaches_everything_under_c2d_v1(pki, broker, observer):
    ctl = MqttClient(pki.as_broker(), pki.controller, "controller")
    s1 = PairClient(pki, "S1", subscribe=["c2d/v1/pair/S1/resp"])
    a = MqttClient(pki.as_broker(), pki.device("rec-a"), "rec-a", subscribe=["c2d/v1/d/rec-a/cfg"])
    try:
        topics = ["c2d/v1/d/rec-a/cfg", "c2d/v1/d/rec-a/seg", "c2d/v1/pair/S1/resp",
                  "c2d/v1/pair/S1/req", "c2d/v1/anything/else"]
        for t in topics:
            ctl.publish(t, t.encode())
        got = wait_for(lambda: sorted(observer.all) if len(observer.all) >= len(topics) else None,
                       10, "the observer to see the controller's messages")
        assert got == sorted((t, t.encode()) for t in topics)
        assert a.get(5) == ("c2d/v1/d/rec-a/cfg", b"c2d/v1/d/rec-a/cfg")
        wait_for(lambda: s1.all == [("c2d/v1/pair/S1/resp", b"c2d/v1/pair/S1/resp")], 5,
                 "S1 to get its resp")
        # but nothing outside c2d/v1
        assert refused(pub(pki, "other/topic", "x", cert=pki.controller))
    finally:
        for c in (ctl, s1, a):
            c.close()


@pytest.mark.xfail(strict=True, reason=(
    "KNOWN LIMITATION of mosquitto 2.0.11 (docs/pki.md): client ids are one namespace "
    "across listeners, so an anonymous pairing client that connects with the "
    "controller's (or a device's) client id disconnects it, and with clean_start false "
    "takes its queued messages away (they are dropped, not leaked: the pairing ACL "
    "still applies). Mitigation: unguessable client ids, or pairing on a broker of its own."))
def test_pairing_client_cannot_disconnect_the_controller(pki, broker):
    ctl = MqttClient(pki.as_broker(), pki.controller, "controller-1")
    drops = []
    ctl.c.on_disconnect = lambda *a: drops.append(a)
    try:
        squatter = PairClient(pki, "controller-1")
        squatter.close()
        time.sleep(1)
        assert drops == []
    finally:
        ctl.close()
