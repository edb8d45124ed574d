"""31: pairing a recorder with a one-time code (docs/pairing.md).

The story on loopback: c2d-ca init makes the PKI and the broker's
configuration (device and pairing listeners); a controller with the API and
a "pki" section serves c2d/v1/pair/+/req; an installer logs in and gets a
code for a recorder; c2d-agent pairs with it (its own key, a CSR whose CN is
the serial), stores the identity and uploads on the device listener with the
new certificate, whose CN is the recorder's device id. A second pairing with
the used code fails; wrong codes are counted and lock the serial; an expired
code fails (pki.code_ttl_s set to 2 s). Unpairing and its cut-off at the
broker: test_33_unpair.py."""

import json
import os
import time

import pytest

from apiclient import Api
from c2dtest import (BUILD_DIR, HOST, Controller, Proc, file_channel, free_port, port_open, run,
                     start_ca_broker, wait_for)
from test_22_quota import DIST, DIST_PW, PW, outbox_link
from test_30_pki import PairClient, Pki, show

AGENT_BIN = BUILD_DIR / "agent" / "c2d-agent"
SERIAL = "SN-PAIR-0001"


@pytest.fixture(scope="module")
def capki(tmp_path_factory):
    return Pki(tmp_path_factory.mktemp("c2d-ca"))


@pytest.fixture
def cabroker(capki, tmp_path):
    p = start_ca_broker(capki.dir, [capki.dev_port, capki.pair_port], tmp_path / "mosquitto.log")
    yield p
    p.kill9()


class Story:
    """Controller (API + pairing) on the c2d-ca broker, the distributor, one
    installer with a client, a site and a recorder without a device id.
    pki: keys over the controller's default "pki" section (e.g.
    {"device_days": 1} in test_36); overrides: other sections."""

    def __init__(self, capki, d, pki=None, default_client_id=False, **overrides):
        self.port = free_port()
        self.ctl = Controller(d / "controller", capki.as_broker(), capki.controller,
                              http={"listen": "127.0.0.1", "port": self.port},
                              pki=dict({"issuing_cert": str(capki.dir / "issuing.crt"),
                                        "issuing_key": str(capki.dir / "issuing.key"),
                                        "chain": str(capki.dir / "chain.crt"),
                                        "device_days": 30,
                                        "device_host": HOST, "device_port": capki.dev_port},
                                       **(pki or {})),
                              **overrides)
        if default_client_id:  # as an operator's configuration would: none given
            del self.ctl.cfg["broker"]["client_id"]
            self.ctl.conf.write_text(json.dumps(self.ctl.cfg, indent=2))
        self.ctl.init(DIST, DIST_PW)
        self.ctl.start()
        wait_for(lambda: port_open(self.port) or not self.ctl.alive(), 20, "the API",
                 on_timeout=self.ctl.diag)
        wait_for(lambda: "connected to" in self.ctl.log_text() or not self.ctl.alive(), 20,
                 "the controller's broker connection", on_timeout=self.ctl.diag)
        time.sleep(0.5)  # its subscriptions follow the connection
        self.api = Api(self.port)
        dist = self.api.token(DIST, DIST_PW)
        email = "installer@example.com"
        self.api.ok("POST", "/api/v1/installers", {"name": "Installer", "email": email},
                    token=dist)
        self.api.ok("POST", "/api/v1/set-password",
                    {"token": outbox_link(self.ctl, email), "password": PW})
        self.tok = self.api.token(email, PW)
        client = self.ok("POST", "/api/v1/clients", {"name": "Client", "email": "c@example.com"})
        site = self.ok("POST", "/api/v1/sites", {"name": "Site", "client_id": client["id"]})
        self.rec = self.ok("POST", "/api/v1/recorders",
                           {"name": "NVR", "serial": SERIAL, "model": "X8",
                            "site_id": site["id"], "channels": 1})
        self.capki = capki
        self.dir = d

    def ok(self, method, path, body=None, want=(200, 201, 204)):
        return self.api.ok(method, path, body, token=self.tok, want=want)

    def pairing(self):
        """The recorder's pairing outcome as GET .../state tells it."""
        return self.ok("GET", "/api/v1/recorders/%d/state" % self.rec["id"])["pairing"]

    def code(self):
        return self.ok("POST", "/api/v1/recorders/%d/pairing-code" % self.rec["id"], want=(201,))

    def agent(self, name, channels, code=None, **overrides):
        """An agent configuration in pairing mode (no device id, no broker);
        overrides are further keys of the agent's configuration."""
        cfg = {"serial": SERIAL, "state_dir": str(self.dir / name / "state"),
               "pairing": {"host": HOST, "port": self.capki.pair_port,
                           "ca_file": str(self.capki.ca)},
               "segment_seconds": 10, "chunk_bytes": 65536, "ack_timeout_s": 3,
               "channels": channels}
        cfg.update(overrides)
        if code:
            cfg["pairing_code"] = code
        p = self.dir / name
        p.mkdir(parents=True, exist_ok=True)
        (p / "agent.json").write_text(json.dumps(cfg, indent=2))
        return p / "agent.json"


def pair(conf, code, check=True):
    return run([AGENT_BIN, "pair", "-c", conf, "--code", code], check=check, timeout=60)


def test_pair_and_upload(capki, cabroker, tmp_path, media):
    s = Story(capki, tmp_path, pki={"pairing_host": "pair.example.com",
                                    "pairing_port": capki.pair_port})
    assert s.pairing() == {"state": "none", "expires_at": None, "wrong_codes": 0,
                           "locked_until": None}
    state_path = "/api/v1/recorders/%d/state" % s.rec["id"]
    unpaired = s.ok("GET", state_path)
    assert unpaired["device"] is None and unpaired["rate_limited"] is None, unpaired
    got = s.code()
    code = got["code"]
    # the pairing listener, as configured, for the installer to pass on
    assert got["pairing"] == {"host": "pair.example.com", "port": capki.pair_port}, got
    st = s.pairing()
    assert st == {"state": "code_issued", "expires_at": got["expires_at"], "wrong_codes": 0,
                  "locked_until": None}, st
    assert code not in json.dumps(st) and "hash" not in st
    assert len(code) == 9 and code[4] == "-", got
    assert set(code.replace("-", "")) <= set("23456789ABCDEFGHJKMNPQRSTUVWXYZ"), got
    dev = got["device_id"]
    assert dev.startswith("rec-") and got["serial"] == SERIAL, got
    # the code is not readable back from the API, nor its hash
    rec = s.ok("GET", "/api/v1/recorders/%d" % s.rec["id"])
    assert rec["device_id"] == dev and "_pair" not in rec and code not in json.dumps(rec)

    # first start with the code in the configuration: pairs, then uploads
    conf = s.agent("agent", [file_channel(1, media.h264_short)], code=code.lower())
    a = Proc("c2d-agent", [AGENT_BIN, "run", "-c", conf, "--exit-when-done"],
             tmp_path / "agent.log")
    rc = a.wait(240)
    assert rc == 0, a.tail()
    ident = tmp_path / "agent" / "state" / "identity"
    assert ident.is_symlink()
    for f in ["device.key", "device.crt", "chain.crt", "identity.json"]:
        assert (ident / f).stat().st_mode & 0o777 == 0o600, f
    assert show(ident / "device.crt")["cn"] == dev
    assert json.loads((ident / "identity.json").read_text())["device_id"] == dev
    segs = s.ctl.segments()
    assert segs and {x["device"] for x in segs} == {dev}, segs
    assert s.pairing()["state"] == "paired"
    # paired or not, the recorder's state has the same keys
    assert set(s.ok("GET", state_path)) == set(unpaired)

    # the same code again: used (and the identity stays as it was)
    before = os.readlink(ident)
    r = pair(conf, code, check=False)
    assert r.returncode != 0 and b"used" in r.stderr, r.stderr
    assert os.readlink(ident) == before

    # a fresh code pairs again: a new key and certificate, same device id
    code2 = s.code()["code"]
    pair(conf, code2.replace("-", ""))
    assert os.readlink(ident) != before
    assert show(ident / "device.crt")["cn"] == dev
    assert not (tmp_path / "agent" / "state" / before).exists()
    assert s.pairing()["state"] == "paired"

    # unpaired: the code is spent, the recorder holds no device id
    s.ok("DELETE", "/api/v1/recorders/%d/pairing" % s.rec["id"])
    assert s.pairing()["state"] == "used"


def test_wrong_codes_lock(capki, cabroker, tmp_path):
    s = Story(capki, tmp_path)
    got = s.code()
    code = got["code"]
    assert "pairing" not in got, got  # no pki.pairing_host: not told
    conf = s.agent("agent", [{"id": 1, "source": "/dev/null"}])
    wrong = "2222-2222" if code != "2222-2222" else "3333-3333"
    for i in range(5):
        r = pair(conf, wrong, check=False)
        assert r.returncode != 0 and b"wrong_code" in r.stderr, r.stderr
        if i < 4:  # the outcome, readable without audit.get
            assert s.pairing() == {"state": "code_issued", "expires_at": got["expires_at"],
                                   "wrong_codes": i + 1, "locked_until": None}
    st = s.pairing()
    assert st["state"] == "locked" and st["locked_until"] and st["wrong_codes"] == 0, st
    # locked: even the right code is refused now
    r = pair(conf, code, check=False)
    assert r.returncode != 0 and b"locked" in r.stderr, r.stderr
    assert s.pairing()["locked_until"] == st["locked_until"]
    assert not (tmp_path / "agent" / "state" / "identity").exists()
    assert "pairing_refused" in json.dumps(
        s.ok("GET", "/api/v1/audit?kind=recorder&id=%d" % s.rec["id"]))


def test_expired_code_fails(capki, cabroker, tmp_path):
    s = Story(capki, tmp_path, pki={"code_ttl_s": 2})
    got = s.code()
    conf = s.agent("agent", [{"id": 1, "source": "/dev/null"}])
    time.sleep(3)
    assert s.pairing()["state"] == "expired"
    r = pair(conf, got["code"], check=False)
    assert r.returncode != 0 and b"expired" in r.stderr, r.stderr
    assert not (tmp_path / "agent" / "state" / "identity").exists()
    # a fresh code (again 2 s) pairs at once
    pair(conf, s.code()["code"])
    assert show(tmp_path / "agent" / "state" / "identity" / "device.crt")["cn"] == got["device_id"]


def test_controller_client_id_cannot_be_squatted(capki, cabroker, tmp_path):
    """Client ids are one namespace across the broker's listeners
    (docs/pki.md): without a client_id in its configuration the controller
    uses one made once per installation, which a pairing client cannot know.
    One that connects as "c2d-controller" knocks nobody off; pairing still
    works; a restart keeps the id (and so the broker's session)."""
    s = Story(capki, tmp_path, default_client_id=True)
    f = s.ctl.data_dir / "mqtt_client_id"
    cid = f.read_text()
    assert cid.startswith("c2d-controller-") and len(cid) == len("c2d-controller-") + 32, cid
    assert f.stat().st_mode & 0o777 == 0o600
    assert ("as %s," % cid) in s.ctl.log_text()

    squatter = PairClient(capki, "c2d-controller")
    time.sleep(1)
    squatter.close()
    conf = s.agent("agent", [{"id": 1, "source": "/dev/null"}])
    pair(conf, s.code()["code"])
    assert "disconnected from the broker" not in s.ctl.log_text()

    s.ctl.stop()
    s.ctl.start()
    wait_for(lambda: s.ctl.log_text().count("as %s," % cid) == 2 or not s.ctl.alive(), 20,
             "the controller again", on_timeout=s.ctl.diag)
    assert f.read_text() == cid
