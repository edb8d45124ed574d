"""34: the installer's wizard, tools/c2d-wizard (docs/wizard.md), end to end.

The whole story on loopback: c2d-ca makes the PKI and the broker's
configuration; a controller with the API, "pki" (pairing) and open_mode
off (only an active disk's segments are stored); the distributor makes an
installer, and sells the installer's client a virtual disk and an AI
subscription; the installer (who made the client and its site) runs the
wizard with --answers --json --code-file. The test reads the pairing code
from the code file, as a script would, and starts a real c2d-agent with it:
the agent pairs, comes online, the wizard activates the disk and reports
the first segment, which the controller really stored.

Also: an invalid answers file fails with the step and the reason and
creates nothing."""

import json
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from apiclient import Api
from c2dtest import (BUILD_DIR, HOST, PYTHON, Controller, Proc, file_channel, free_port,
                     port_open, wait_for)
from test_22_quota import DIST, DIST_PW, MIB, PW, outbox_link
from test_31_pairing import cabroker, capki  # noqa: F401 (fixtures)

REPO = Path(__file__).resolve().parents[2]
WIZARD = REPO / "tools" / "c2d-wizard"
AGENT_BIN = BUILD_DIR / "agent" / "c2d-agent"
EMAIL = "installer@example.com"
SERIAL = "SN-WIZ-0001"


class Installer:
    """Controller (API + pairing, open_mode off) on the c2d-ca broker; the
    distributor; one installer with a client and a site; the client's
    virtual disk (pending) and AI subscription."""

    def __init__(self, capki, d):
        broker = SimpleNamespace(port=capki.dev_port, pki=SimpleNamespace(ca=capki.ca))
        self.port = free_port()
        self.ctl = Controller(d / "controller", broker, capki.controller,
                              http={"listen": "127.0.0.1", "port": self.port},
                              open_mode=False,
                              pki={"issuing_cert": str(capki.dir / "issuing.crt"),
                                   "issuing_key": str(capki.dir / "issuing.key"),
                                   "chain": str(capki.dir / "chain.crt"),
                                   "device_days": 30,
                                   "device_host": HOST, "device_port": capki.dev_port,
                                   # the pairing listener, given with each code
                                   "pairing_host": HOST, "pairing_port": capki.pair_port})
        self.ctl.init(DIST, DIST_PW)
        self.ctl.start()
        wait_for(lambda: port_open(self.port) or not self.ctl.alive(), 20, "the API",
                 on_timeout=self.ctl.diag)
        wait_for(lambda: "connected to" in self.ctl.log_text() or not self.ctl.alive(), 20,
                 "the controller's broker connection", on_timeout=self.ctl.diag)
        time.sleep(0.5)  # its subscriptions follow the connection
        self.api = Api(self.port)
        dist = self.api.token(DIST, DIST_PW)
        inst = self.api.ok("POST", "/api/v1/installers", {"name": "Installer", "email": EMAIL},
                           token=dist)
        self.api.ok("POST", "/api/v1/set-password",
                    {"token": outbox_link(self.ctl, EMAIL), "password": PW})
        self.tok = self.api.token(EMAIL, PW)
        self.client = self.ok("POST", "/api/v1/clients",
                              {"name": "Bakery", "email": "bakery@example.com"})
        self.site = self.ok("POST", "/api/v1/sites",
                            {"name": "Main street", "client_id": self.client["id"]})
        self.vdisk = self.api.ok("POST", "/api/v1/installers/%d/vdisks" % inst["id"],
                                 {"client_id": self.client["id"], "capacity_bytes": 64 * MIB,
                                  "retention_days": 30, "name": "Bakery 64M"}, token=dist)
        self.api.ok("POST", "/api/v1/installers/%d/ai-subscriptions" % inst["id"],
                    {"client_id": self.client["id"], "algorithms": ["person", "vehicle"],
                     "channels_max": 1}, token=dist)
        self.capki = capki
        self.dir = d
        (d / "password").write_text(PW + "\n")

    def ok(self, method, path, body=None, want=(200, 201, 204)):
        return self.api.ok(method, path, body, token=self.tok, want=want)

    def wizard_cmd(self, *extra):
        """No --broker: the controller gives the pairing listener."""
        return [PYTHON, WIZARD, "--api", "http://127.0.0.1:%d" % self.port, "--email", EMAIL,
                "--password-file", self.dir / "password",
                "--firmware-dir", REPO / "firmware-configs"] + list(extra)

    def agent_conf(self, code, channels):
        """The recorder's agent in pairing mode, the code in its configuration."""
        cfg = {"serial": SERIAL, "state_dir": str(self.dir / "agent" / "state"),
               "pairing": {"host": HOST, "port": self.capki.pair_port,
                           "ca_file": str(self.capki.ca)},
               "segment_seconds": 10, "chunk_bytes": 65536, "ack_timeout_s": 3,
               "channels": channels}
        if code:
            cfg["pairing_code"] = code
        p = self.dir / "agent"
        p.mkdir(parents=True, exist_ok=True)
        (p / "agent.json").write_text(json.dumps(cfg, indent=2))
        return p / "agent.json"


def answers(tmp_path, **over):
    a = {"device": {"serial": SERIAL, "model": "generic-nvr-4ch", "name": "Bakery NVR",
                    "client": "Bakery", "site": "Main street"},
         "drive": {"name": "Bakery cloud", "retention_days": 7, "policy": "overwrite"},
         "channels": [{"name": "Counter", "ai_algorithms": ["person"]},
                      {"name": "Door"}, {"name": "Store", "cloud_backup": False}],
         "confirm": {"timeout_s": 120, "segment_timeout_s": 120}}
    a.update(over)
    f = tmp_path / "answers.json"
    f.write_text(json.dumps(a))
    return f


def spawn(cmd, d):
    """The wizard with stdout and stderr in files of d."""
    out, err = open(d / "wizard.out", "wb"), open(d / "wizard.err", "wb")
    p = subprocess.Popen([str(c) for c in cmd], stdout=out, stderr=err,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    out.close()
    err.close()
    return p


def text(d, name):
    return (d / name).read_text(errors="replace")


@pytest.mark.timeout(300)
def test_wizard_answers_story(capki, cabroker, tmp_path, media):  # noqa: F811
    s = Installer(capki, tmp_path)
    code_file = tmp_path / "code.json"
    p = spawn(s.wizard_cmd("--answers", answers(tmp_path), "--json", "--code-file", code_file),
              tmp_path)
    agent = None
    try:
        got = wait_for(lambda: code_file.exists() and json.loads(code_file.read_text())
                       or (p.poll() is not None and "exited"), 60,
                       "the wizard's code file", on_timeout=lambda: text(tmp_path, "wizard.err"))
        assert got != "exited", text(tmp_path, "wizard.err")
        code = got["code"]
        assert len(code) == 9 and code[4] == "-" and got["serial"] == SERIAL, got
        # from the code's answer (pki.pairing_host/_port): no --broker given
        assert got["broker"] == "%s:%d" % (HOST, capki.pair_port), got
        assert code_file.stat().st_mode & 0o777 == 0o600
        # step 4 made the recorder, its channels as answered, and a code
        rec = s.ok("GET", "/api/v1/recorders/%d" % got["recorder_id"])
        assert rec["serial"] == SERIAL and rec["model"] == "generic-nvr-4ch" and \
            rec["channels"] == 4 and rec["site_id"] == s.site["id"], rec
        chans = {c["number"]: c for c in
                 s.ok("GET", "/api/v1/channels?recorder_id=%d" % rec["id"])["items"]}
        assert [chans[n]["name"] for n in (1, 2, 3, 4)] == ["Counter", "Door", "Store",
                                                            "Channel 4"], chans
        assert chans[1]["ai_algorithms"] == ["person"] and chans[3]["cloud_backup"] is False
        # the code line on stderr, for scripts that read no file
        assert '"event": "code"' in text(tmp_path, "wizard.err")
        # the disk is not touched before the recorder is online (undoable)
        assert s.ok("GET", "/api/v1/vdisks/%d" % s.vdisk["id"])["recorder_id"] is None

        conf = s.agent_conf(code, [file_channel(1, media.h264_short)])
        agent = Proc("c2d-agent", [AGENT_BIN, "run", "-c", conf, "--exit-when-done"],
                     tmp_path / "agent.log")
        rc = p.wait(240)
        assert rc == 0, text(tmp_path, "wizard.err") + agent.tail()
    finally:
        if p.poll() is None:
            p.kill()
    res = json.loads(text(tmp_path, "wizard.out"))
    for k in ("recorder_id", "device_id", "code", "broker", "online_at", "first_segment_at"):
        assert res.get(k), (k, res)
    assert res["code"] == code and res["recorder_id"] == got["recorder_id"]
    assert res["device_id"] == got["device_id"] and res["device_id"].startswith("rec-")
    assert res["first_segment"]["channel"] == 1
    # the disk is configured as answered and active
    vd = s.ok("GET", "/api/v1/vdisks/%d" % s.vdisk["id"])
    assert vd["state"] == "active" and vd["recorder_id"] == res["recorder_id"], vd
    assert vd["name"] == "Bakery cloud" and vd["retention_days"] == 7, vd
    # the segment the wizard saw is one the controller stored for the device
    segs = [x for x in s.ctl.segments() if x["device"] == res["device_id"]]
    assert segs and res["first_segment"]["start"], segs
    recs = s.ok("GET", "/api/v1/channels/%d/recordings" % chans[1]["id"])["items"]
    assert recs and recs[0]["start"] == res["first_segment"]["start"], recs
    assert "Done:" in text(tmp_path, "wizard.err")
    if agent:
        agent.wait(120)


@pytest.mark.timeout(120)
def test_wizard_answers_invalid(capki, cabroker, tmp_path):  # noqa: F811
    s = Installer(capki, tmp_path)

    def wizard(**over):
        r = subprocess.run([str(c) for c in s.wizard_cmd("--answers", answers(tmp_path, **over),
                                                         "--json")],
                           capture_output=True, text=True, timeout=60)
        return r.returncode, r.stderr, json.loads(r.stdout) if r.stdout.strip() else None

    rc, err, out = wizard(device={"serial": "-bad", "client": "Bakery", "site": "Main street"})
    assert rc == 1 and "step 1 (device): serial:" in err, err
    assert out["step"] == 1 and "serial" in out["error"], out
    rc, err, out = wizard(device={"serial": SERIAL, "model": "nope"})
    assert rc == 1 and "step 1 (device): model: no model 'nope'" in err, err
    # an algorithm the client's AI subscription does not allow
    rc, err, out = wizard(channels=[{"ai_algorithms": ["face"]}])
    assert rc == 1 and "step 3 (channels): 1.ai_algorithms:" in err and "face" in err, err
    # more AI channels than subscribed (1)
    rc, err, out = wizard(channels=[{"ai_algorithms": ["person"]},
                                    {"ai_algorithms": ["vehicle"]}])
    assert rc == 1 and "allow 1 channel(s) with AI" in err, err
    rc, err, out = wizard(drive={"retention_days": 31})
    assert rc == 1 and "step 2 (drive): retention_days: the subscription keeps at most 30" \
        in err, err
    rc, err, out = wizard(extra={"x": 1})
    assert rc == 1 and "unknown key 'extra'" in err, err
    # nothing was created, the disk untouched
    assert s.ok("GET", "/api/v1/recorders")["items"] == []
    vd = s.ok("GET", "/api/v1/vdisks/%d" % s.vdisk["id"])
    assert vd["state"] == "pending" and vd["recorder_id"] is None, vd
    # no agent ever comes: the wizard says so, removes its recorder, exit 1;
    # --broker overrides the listener the controller gives
    r = subprocess.run([str(c) for c in s.wizard_cmd(
        "--answers", answers(tmp_path, confirm={"timeout_s": 3}),
        "--json", "--broker", "broker.example.com:9999")], capture_output=True, text=True,
        timeout=60)
    assert r.returncode == 1 and "did not come online within 3 s" in r.stderr, r.stderr
    assert "removed recorder" in r.stderr, r.stderr
    assert "Broker (pairing listener): broker.example.com:9999" in r.stderr, r.stderr
    assert s.ok("GET", "/api/v1/recorders")["items"] == []


@pytest.mark.timeout(180)
def test_wizard_wrong_codes(capki, cabroker, tmp_path):  # noqa: F811
    """The recorder sends wrong codes: the wizard reads the outcome from the
    recorder's state (no audit log needed), reports the lock, and removes
    its recorder."""
    s = Installer(capki, tmp_path)
    code_file = tmp_path / "code.json"
    p = spawn(s.wizard_cmd("--answers", answers(tmp_path, confirm={"timeout_s": 120}),
                           "--code-file", code_file), tmp_path)
    try:
        got = wait_for(lambda: code_file.exists() and json.loads(code_file.read_text())
                       or (p.poll() is not None and "exited"), 60,
                       "the wizard's code file", on_timeout=lambda: text(tmp_path, "wizard.err"))
        assert got != "exited", text(tmp_path, "wizard.err")
        conf = s.agent_conf(None, [{"id": 1, "source": "/dev/null"}])
        wrong = "2222-2222" if got["code"] != "2222-2222" else "3333-3333"
        for _ in range(5):
            r = subprocess.run([str(AGENT_BIN), "pair", "-c", str(conf), "--code", wrong],
                               capture_output=True, timeout=60)
            assert r.returncode != 0 and b"wrong_code" in r.stderr, r.stderr
        rc = p.wait(60)
    finally:
        if p.poll() is None:
            p.kill()
    err = text(tmp_path, "wizard.err")
    assert rc == 1 and "step 5 (confirm): the recorder typed a wrong code 5 times: its serial " \
        "is locked until" in err, err
    assert "removed recorder" in text(tmp_path, "wizard.out"), text(tmp_path, "wizard.out")
    assert s.ok("GET", "/api/v1/recorders")["items"] == []
