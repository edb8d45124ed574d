"""33: unpairing or deleting a recorder cuts it off (docs/pairing.md,
"Unpairing").

c2d-ca init with --pid-file; the controller has a "revocation" object (the
device listener's acl file and the broker's pid file). A recorder pairs
(test_31's story); a client holding its certificate stays connected and
publishes. DELETE /api/v1/recorders/{id}/pairing revokes its device id: the
controller appends a deny block to the ACL and sends SIGHUP, and within the
documented bound (REVOKE_BOUND_S) the connected client's messages stop
arriving; afterwards the real mosquitto_pub with the old certificate cannot
publish and mosquitto_sub cannot read its topics. A new code gives a new
device id and certificate that work; deleting the recorder cuts that one off
the same way."""

import json
import subprocess
import threading
import time
from pathlib import Path

import pytest

from apiclient import err
from c2dtest import HOST, Cert, MqttClient, free_port, start_ca_broker, wait_for
from test_30_pki import Pki, init, pub, refused
from test_31_pairing import Story, pair

# docs/pairing.md: the daemon checks the revocations every 0.25 s and its
# loop wakes at least every 0.5 s; the broker reloads at once.
REVOKE_BOUND_S = 2.0


class RevPki(Pki):
    """Pki, with c2d-ca init --pid-file (the controller signals the broker)."""

    def __init__(self, d):
        self.dir = Path(d)
        self.pid_file = self.dir / "mosquitto.pid"
        self.dev_port = free_port()
        self.pair_port = free_port()
        while self.pair_port == self.dev_port:
            self.pair_port = free_port()
        init(self.dir, self.dev_port, self.pair_port, "--pid-file", self.pid_file)
        self.ca = self.dir / "ca.crt"
        self.controller = Cert("c2d-controller", self.dir / "controller.crt",
                               self.dir / "controller.key")
        self._devices = {}


@pytest.fixture
def rpki(tmp_path):
    return RevPki(tmp_path / "ca")


@pytest.fixture
def rbroker(rpki, tmp_path):
    p = start_ca_broker(rpki.dir, (rpki.dev_port, rpki.pair_port), tmp_path / "mosquitto.log")
    wait_for(lambda: rpki.pid_file.exists(), 5, "the broker's pid file")
    yield p
    p.kill9()


def story(rpki, tmp_path):
    s = Story(rpki, tmp_path, revocation={"acl_file": str(rpki.dir / "acl"),
                                          "broker_pid_file": str(rpki.pid_file)})
    wait_for(lambda: "revocation: broker ACL holds 0" in s.ctl.log_text(), 10,
             "the ACL applied at start", on_timeout=s.ctl.diag)
    return s


def identity(tmp_path, name, dev):
    ident = tmp_path / name / "state" / "identity"
    return Cert(dev, ident / "device.crt", ident / "device.key")


def sub_gets(rpki, cert, topics, publish, wait=4):
    """mosquitto_sub with cert on topics, while publish() runs: what it printed."""
    args = ["mosquitto_sub", "-h", HOST, "-p", str(rpki.dev_port), "-V", "mqttv5",
            "--cafile", str(rpki.ca), "--cert", str(cert.crt), "--key", str(cert.key),
            "-q", "1", "-W", str(wait), "-v", "-i", "sub-" + cert.cn]
    for t in topics:
        args += ["-t", t]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.0)  # connected and subscribed
    publish()
    out, err = p.communicate(timeout=wait + 10)
    return out.decode()


class Talker:
    """A client with a device certificate that stays connected and publishes
    on its state topic every 50 ms; the observer records arrivals."""

    def __init__(self, rpki, cert, observer):
        self.c = MqttClient(rpki.as_broker(), cert, "talker-" + cert.cn)
        self.topic = "c2d/v1/d/%s/state" % cert.cn
        self.observer = observer
        self.arrivals = []
        self.stop = False
        observer.c.message_callback_add(self.topic, self._seen)
        self.t = threading.Thread(target=self._run)
        self.t.start()

    def _seen(self, client, userdata, msg):
        self.arrivals.append(time.monotonic())

    def _run(self):
        i = 0
        while not self.stop:
            self.c.c.publish(self.topic, b"talk %d" % i, qos=0)
            i += 1
            time.sleep(0.05)

    def close(self):
        self.stop = True
        self.t.join()
        self.c.close()


def cut_off(s, rpki, cert, observer, action):
    """Runs action (the API call) while cert's connected talker publishes;
    returns the delay from the call to its last message seen."""
    talker = Talker(rpki, cert, observer)
    try:
        wait_for(lambda: len(talker.arrivals) > 5, 5, "the talker's messages (positive control)")
        t0 = time.monotonic()
        action()
        time.sleep(REVOKE_BOUND_S + 1.5)
        assert talker.c.connect_rc == 0
        last = max(talker.arrivals)
        n_at_end = len(talker.arrivals)
        time.sleep(1.0)
        assert len(talker.arrivals) == n_at_end, "the connected client still gets through"
        return last - t0
    finally:
        talker.close()


def check_old_cert_dead(rpki, cert, observer):
    dev = cert.cn
    observer.drain(0.5)
    for kind in ("seg", "state", "evt"):
        assert refused(pub(rpki, "c2d/v1/d/%s/%s" % (dev, kind), "after", cert=cert)), kind
    got = sub_gets(rpki, cert, ["c2d/v1/d/%s/ack" % dev, "c2d/v1/d/%s/cfg" % dev],
                   lambda: [observer.publish("c2d/v1/d/%s/%s" % (dev, k), b"late-" + k.encode())
                            for k in ("ack", "cfg")])
    assert "late-" not in got, got
    assert [m for m in observer.drain(1.0) if m[0].startswith("c2d/v1/d/%s/" % dev)
            and m[1] == b"after"] == []


def check_cert_alive(rpki, cert, observer):
    dev = cert.cn
    observer.drain(0.5)
    assert not refused(pub(rpki, "c2d/v1/d/%s/state" % dev, "alive", cert=cert))
    wait_for(lambda: ("c2d/v1/d/%s/state" % dev, b"alive") in observer.all, 5,
             "the observer to get %s's message" % dev)
    got = sub_gets(rpki, cert, ["c2d/v1/d/%s/ack" % dev],
                   lambda: observer.publish("c2d/v1/d/%s/ack" % dev, b"early"))
    assert "early" in got, got


def test_unpair_repair_delete(rpki, rbroker, tmp_path):
    s = story(rpki, tmp_path)
    conf = s.agent("agent", [{"id": 1, "source": "/dev/null"}])
    got = s.code()
    dev = got["device_id"]
    pair(conf, got["code"])
    old = identity(tmp_path, "agent", dev)
    observer = MqttClient(rpki.as_broker(), rpki.controller, "observer",
                          subscribe=["c2d/v1/d/#"])
    try:
        check_cert_alive(rpki, old, observer)

        # unpair: the connected client is cut off within the bound
        path = "/api/v1/recorders/%d/pairing" % s.rec["id"]
        delay = cut_off(s, rpki, old, observer, lambda: s.ok("DELETE", path, want=(200,)))
        print("unpair cut-off after %.3f s" % delay)
        assert delay < REVOKE_BOUND_S, delay
        check_old_cert_dead(rpki, old, observer)
        rec = s.ok("GET", "/api/v1/recorders/%d" % s.rec["id"])
        assert "device_id" not in rec, rec
        assert "unpaired" in str(s.ok("GET", "/api/v1/audit?kind=recorder&id=%d" % s.rec["id"]))
        acl = (rpki.dir / "acl").read_text()
        assert "user %s\ntopic deny c2d/v1/#\n" % dev in acl
        assert "pattern write c2d/v1/d/%u/seg" in acl  # c2d-ca's part is kept
        # unpaired twice: nothing left to revoke
        s.ok("DELETE", path, want=(409,))
        # the old id cannot be given back to a recorder
        st, body, _ = s.api.req("PUT", "/api/v1/recorders/%d" % s.rec["id"], {"device_id": dev},
                                token=s.tok)
        assert st == 409 and err(body) == "device_revoked", (st, body)

        # re-pair: a new device id and certificate that work; the old stays dead
        got2 = s.code()
        dev2 = got2["device_id"]
        assert dev2 != dev
        pair(conf, got2["code"])
        new = identity(tmp_path, "agent", dev2)
        check_cert_alive(rpki, new, observer)
        check_old_cert_dead(rpki, old, observer)

        # deleting the recorder cuts the new certificate off the same way
        delay = cut_off(s, rpki, new, observer,
                        lambda: s.ok("DELETE", "/api/v1/recorders/%d" % s.rec["id"],
                                     want=(200, 204)))
        print("delete cut-off after %.3f s" % delay)
        assert delay < REVOKE_BOUND_S, delay
        check_old_cert_dead(rpki, new, observer)
        assert "revocation: broker ACL holds 2 revoked" in s.ctl.log_text()
    finally:
        observer.close()


def test_controller_ignores_revoked_device(rpki, rbroker, tmp_path):
    """Without the broker's cut-off (no "revocation" object) the controller
    still ignores a revoked device's messages; and a restart heals an ACL
    that missed a revocation."""
    s = Story(rpki, tmp_path)
    conf = s.agent("agent", [{"id": 1, "source": "/dev/null"}])
    got = s.code()
    dev = got["device_id"]
    pair(conf, got["code"])
    cert = identity(tmp_path, "agent", dev)
    s.ok("DELETE", "/api/v1/recorders/%d/pairing" % s.rec["id"], want=(200,))
    # no ACL configured: the broker lets it through, the controller drops it
    assert not refused(pub(rpki, "c2d/v1/d/%s/state" % dev, '{"v":1}', cert=cert))
    wait_for(lambda: "device %s: ignored message on c2d/v1/d/%s/state: device id revoked"
             % (dev, dev) in s.ctl.log_text(), 10, "the controller to ignore it",
             on_timeout=s.ctl.diag)
    # restarted with the ACL configured: the missed revocation is applied
    s.ctl.stop()
    s.ctl.cfg["revocation"] = {"acl_file": str(rpki.dir / "acl"),
                               "broker_pid_file": str(rpki.pid_file)}
    s.ctl.conf.write_text(json.dumps(s.ctl.cfg, indent=2))
    s.ctl.start()
    wait_for(lambda: "revocation: broker ACL holds 1 revoked device id(s) (at start)"
             in s.ctl.log_text(), 15, "the ACL applied at start", on_timeout=s.ctl.diag)
    time.sleep(0.5)
    assert refused(pub(rpki, "c2d/v1/d/%s/state" % dev, "x", cert=cert))


def test_stale_pid_file_signals_nobody(rpki, rbroker, tmp_path):
    """A pid file that names another process (the broker died and its pid
    was reused) gets that process no SIGHUP, whose default action would end
    it: the controller checks /proc/PID/comm, says the pid file is stale and
    retries."""
    bystander = subprocess.Popen(["sleep", "120"])
    stale = tmp_path / "stale.pid"
    stale.write_text("%d\n" % bystander.pid)
    try:
        s = Story(rpki, tmp_path, revocation={"acl_file": str(rpki.dir / "acl"),
                                              "broker_pid_file": str(stale)})
        wait_for(lambda: "is not mosquitto (stale pid file)" in s.ctl.log_text(), 10,
                 "the stale pid file reported", on_timeout=s.ctl.diag)
        time.sleep(0.5)
        assert bystander.poll() is None, "the bystander got a signal"
        assert s.ctl.alive()
    finally:
        bystander.kill()
        bystander.wait()
