"""36: a paired agent renews its certificate over its own topics
(docs/pairing.md, "Renewal").

On the c2d-ca broker: a controller whose device certificates last one day
pairs an agent; the agent's renew_before_s (two days) puts it in its
renewal window at once. It sends a CSR for a new key on
c2d/v1/d/{device}/csr, stores the answer from .../cert as a new identity
(symlink swap), reconnects and keeps uploading. The new certificate has a
new serial, CN = device id and a later notAfter; the old identity directory
is gone. A second request within the hour is answered too_soon; once the
recorder is deleted, its device's requests are answered revoked and nothing
else of them is processed."""

import json
import os
import re
import subprocess
import time

from c2dtest import Cert, MqttClient, Proc, file_channel, wait_for
from test_30_pki import show
from test_31_pairing import AGENT_BIN, Story, cabroker, capki, pair  # noqa: F401 (fixtures)

RENEW_BEFORE_S = 2 * 86400  # longer than the one-day lifetime: due at once


def csr_request(key, cn):
    """{"csr": PEM} for key with subject CN=cn (openssl)."""
    pem = subprocess.run(["openssl", "req", "-new", "-key", str(key), "-subj", "/CN=" + cn],
                         check=True, capture_output=True, timeout=30).stdout.decode()
    return json.dumps({"csr": pem})


def ask(capki, cert, dev, payload, timeout=15, want_answer=True):
    """Publishes payload on dev's csr topic as cert, returns the answer
    (None if there is none and want_answer is false)."""
    c = MqttClient(capki.as_broker(), cert, "t36-%d" % os.getpid(), subscribe=["c2d/v1/d/%s/cert" % dev])
    try:
        c.publish("c2d/v1/d/%s/csr" % dev, payload)
        m = c.get(timeout)
        if m is None and not want_answer:
            return None
        assert m is not None, "no answer on c2d/v1/d/%s/cert" % dev
        return json.loads(m[1])
    finally:
        c.close()


def test_renew_and_keep_uploading(capki, cabroker, tmp_path, media):
    s = Story(capki, tmp_path, pki={"device_days": 1})  # test_31's, one-day certificates
    got = s.ok("POST", "/api/v1/recorders/%d/pairing-code" % s.rec["id"], want=(201,))
    dev = got["device_id"]
    conf = s.agent("agent", [file_channel(1, media.h264_short, realtime=True, loop=True)],
                   segment_seconds=2, renew_before_s=RENEW_BEFORE_S)
    pair(conf, got["code"])
    state = tmp_path / "agent" / "state"
    ident = state / "identity"
    old_dir = os.readlink(ident)
    old = show(ident / "device.crt")
    assert old["cn"] == dev
    time.sleep(1.2)  # notAfter has a resolution of one second

    a = Proc("c2d-agent", [AGENT_BIN, "run", "-c", conf, "-v"], tmp_path / "agent.log")
    try:
        wait_for(lambda: "certificate renewed" in a.text() or not a.alive(), 60,
                 "the renewal", on_timeout=lambda: print(a.tail(), s.ctl.diag()))
        assert a.alive(), a.tail()
        new = show(ident / "device.crt")
        assert new["cn"] == dev, new
        assert new["serial"] != old["serial"], (old, new)
        assert new["not_after"] > old["not_after"], (old, new)
        assert os.readlink(ident) != old_dir
        assert not (state / old_dir).exists()
        assert sorted(p.name for p in state.glob("identity.*")) == [os.readlink(ident)]
        for f in ["device.key", "device.crt", "chain.crt", "identity.json"]:
            assert (ident / f).stat().st_mode & 0o777 == 0o600, f

        # it reconnects (with the files now on disk) and keeps uploading
        def after_renewal():
            t = a.text()
            rest = t[t.index("certificate renewed"):]
            return "connected to broker" in rest and "segment committed" in rest
        wait_for(after_renewal, 60, "a reconnect and a commit after the renewal",
                 on_timeout=lambda: print(a.tail()))
        n = len(s.ctl.segments())
        wait_for(lambda: len(s.ctl.segments()) > n, 30, "more segments stored")
        assert {x["device"] for x in s.ctl.segments()} == {dev}
        # no second request while the new certificate is fresh (AGENT_RENEW_GAP_S)
        assert a.text().count("renewal request") == 1, a.tail()
    finally:
        a.stop()

    log = s.ctl.log_text()
    assert re.search(r"renewal on c2d/v1/d/%s/csr: certificate serial %s" % (dev, new["serial"]),
                     log), log[-3000:]
    audit = json.dumps(s.ok("GET", "/api/v1/audit?kind=recorder&id=%d" % s.rec["id"]))
    assert "cert_renewed" in audit and "device:" + dev in audit and new["serial"] in audit, audit

    cert = Cert(dev, ident / "device.crt", ident / "device.key")
    # a second renewal within the hour (a CSR for another CN, bad_csr, is
    # tests/unit/test_renew.c's: the rate limit is checked first)
    assert ask(capki, cert, dev, csr_request(ident / "device.key", dev)) == \
        {"ok": False, "error": "too_soon"}

    # the recorder deleted: its device id is revoked. The daemon ignores
    # every message of a revoked id (controller/revoke.h) but answers a
    # renewal request "revoked", so that its agent stops asking and says it
    # must be paired again (tests/unit/test_renew.c)
    s.ok("DELETE", "/api/v1/recorders/%d" % s.rec["id"])
    assert ask(capki, cert, dev, csr_request(ident / "device.key", dev), timeout=5) == \
        {"ok": False, "error": "revoked"}
    # nothing else of it is read: not even the payload
    assert ask(capki, cert, dev, "not json", timeout=5) == {"ok": False, "error": "revoked"}
    wait_for(lambda: re.search(r"device %s: ignored message on c2d/v1/d/%s/csr: device id revoked"
                               % (dev, dev), s.ctl.log_text()), 10, "the request refused")
    assert s.ctl.log_text().count("renewal on c2d/v1/d/%s/csr: certificate" % dev) == 1
