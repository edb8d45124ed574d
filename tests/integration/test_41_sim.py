"""41: the fleet simulator's driver, tools/c2d-sim (issue 6), end to end.

On loopback with TLS: c2d-ca's PKI and broker, a controller with the API and
pairing and open_mode off (only segments of an active disk are stored), a
distributor and an installer. `c2d-sim all` makes 3 recorders x 2 channels
through the API (the distributor sells a disk per recorder, the installer
makes the client, site, recorders, codes and the disks' five steps), pairs
each with `c2d-agent pair`, and runs the fleet on a short low-bitrate
recording read as fast as it can. Its JSON's counts must be what the
controller stored (ledger and API), every segment acked. A second `run`
of the same fleet, with one c2d-agent per recorder (--engine agents, also
the fallback when the engine is not built), reads the recording again and
stores as many new segments."""

import json
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from apiclient import Api
from c2dtest import BUILD_DIR, HOST, PYTHON, Controller, free_port, port_open, wait_for
from test_22_quota import DIST, DIST_PW, PW, outbox_link
from test_31_pairing import cabroker, capki  # noqa: F401 (fixtures)

REPO = Path(__file__).resolve().parents[2]
SIM = REPO / "tools" / "c2d-sim"
EMAIL = "sim-installer@example.com"
RECORDERS, CHANNELS = 3, 2
SECONDS = 25  # three 10 s segments a channel: 10, 10, 5


def controller(capki, d):
    """Controller (API + pairing, open_mode off) on the c2d-ca broker, its
    distributor, and an installer with a password."""
    broker = SimpleNamespace(port=capki.dev_port, pki=SimpleNamespace(ca=capki.ca))
    port = free_port()
    ctl = Controller(d / "controller", broker, capki.controller,
                     http={"listen": "127.0.0.1", "port": port}, open_mode=False,
                     pki={"issuing_cert": str(capki.dir / "issuing.crt"),
                          "issuing_key": str(capki.dir / "issuing.key"),
                          "chain": str(capki.dir / "chain.crt"), "device_days": 30,
                          "device_host": HOST, "device_port": capki.dev_port,
                          "pairing_host": HOST, "pairing_port": capki.pair_port})
    ctl.init(DIST, DIST_PW)
    ctl.start()
    wait_for(lambda: port_open(port) or not ctl.alive(), 20, "the API", on_timeout=ctl.diag)
    wait_for(lambda: "connected to" in ctl.log_text() or not ctl.alive(), 20,
             "the controller's broker connection", on_timeout=ctl.diag)
    time.sleep(0.5)  # its subscriptions follow the connection
    api = Api(port)
    dist = api.token(DIST, DIST_PW)
    api.ok("POST", "/api/v1/installers", {"name": "Sim installer", "email": EMAIL}, token=dist)
    api.ok("POST", "/api/v1/set-password", {"token": outbox_link(ctl, EMAIL), "password": PW})
    (d / "pw").write_text(PW + "\n")
    (d / "dist-pw").write_text(DIST_PW + "\n")
    return ctl, api, port


def sim(*args, timeout=240):
    r = subprocess.run([PYTHON, str(SIM)] + [str(a) for a in args], capture_output=True,
                       text=True, timeout=timeout)
    lines = r.stdout.strip().splitlines()
    return r.returncode, json.loads(lines[-1]) if lines else None, r.stderr


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def check_run(res, stored, engine=None):
    assert res["devices"] == RECORDERS and res["channels"] == RECORDERS * CHANNELS, res
    assert res["segments_made"] == res["segments_acked"] == len(stored), (res, len(stored))
    assert res["segments_made"] >= RECORDERS * CHANNELS * 3, res
    assert res["bytes_acked"] == sum(s["size"] for s in stored), res
    assert res["segments_rejected"] == 0 and res["segments_dropped"] == 0, res
    lat = res["ack_latency_ms"]
    assert lat["n"] == len(stored) and 0 < lat["p50"] <= lat["p99"] <= lat["max"], lat
    assert res["ingest_MBps"] > 0, res
    assert res["controller_cpu_s"] > 0 and res["controller_peak_rss_kib"] > 0, res
    assert res["broker_cpu_s"] >= 0, res
    if engine:
        assert res["engine"] == engine, res


@pytest.mark.timeout(600)
def test_sim_all_and_rerun(capki, cabroker, tmp_path):  # noqa: F811
    ctl, api, port = controller(capki, tmp_path)
    fleet = tmp_path / "fleet"
    common = ["--fleet-dir", fleet, "--builddir", BUILD_DIR,
              "--controller-pid", ctl.proc.pid, "--broker-pid", cabroker.pid]
    rc, res, err = sim("all", "--api", "http://127.0.0.1:%d" % port, "--email", EMAIL,
                       "--password-file", tmp_path / "pw", "--distributor-email", DIST,
                       "--distributor-password-file", tmp_path / "dist-pw", "--create-site",
                       "--recorders", RECORDERS, "--channels", CHANNELS, "--ca-file", capki.ca,
                       "--bitrate", 300000, "--seconds", SECONDS, "--no-realtime",
                       "--serial-prefix", "SIM41-", "--progress-s", 2, *common)
    assert rc == 0 and res, err + ctl.diag()
    print(err, json.dumps(res))
    info = json.loads((fleet / "fleet.json").read_text())
    devs = {r["device_id"] for r in info["recorders"]}
    assert info["complete"] and len(devs) == RECORDERS, info
    segs = ctl.segments()
    assert {s["device"] for s in segs} == devs, segs
    check_run(res, segs)
    # every serial paired, its disk active; the API lists what the ledger holds
    tok = api.token(EMAIL, PW)
    # read as fast as it goes, a recording's segments run ahead of the clock
    span = "from=%s&to=%s" % (iso(time.time() - 3600), iso(time.time() + 3600))
    for r in info["recorders"]:
        assert (fleet / r["serial"] / "state" / "identity").is_symlink()
        vd = api.ok("GET", "/api/v1/vdisks/%d" % r["vdisk_id"], token=tok)
        assert vd["state"] == "active" and vd["recorder_id"] == r["recorder_id"], vd
        mine = [s for s in segs if s["device"] == r["device_id"]]
        assert vd["usage"]["segments"] == len(mine), (vd, len(mine))
        for n, cid in enumerate(r["channel_ids"], 1):
            recs = api.ok("GET", "/api/v1/channels/%d/recordings?%s" % (cid, span),
                          token=tok)["items"]
            assert len(recs) == len([s for s in mine if s["channel"] == n]), recs
    # prepared fleet again, no API calls: a second pass over the recording
    # (a new source name, so the channels do not find it finished)
    rc, res2, err = sim("run", "--engine", "agents", "--progress-s", 2, *common)
    assert rc == 0 and res2, err + ctl.diag()
    print(err, json.dumps(res2))
    segs2 = ctl.segments()
    new = [s for s in segs2 if (s["device"], s["channel"], s["start_us"]) not in
           {(x["device"], x["channel"], x["start_us"]) for x in segs}]
    assert len(segs2) == 2 * len(segs), (len(segs2), len(segs))
    check_run(res2, new, engine="agents")
    assert res2["procs"] == RECORDERS
    # a fleet directory is not prepared twice
    rc, _, err = sim("prepare", "--api", "http://127.0.0.1:%d" % port, "--email", EMAIL,
                     "--password-file", tmp_path / "pw", "--site", 1, "--recorders", 1,
                     "--channels", 1, "--ca-file", capki.ca, "--fleet-dir", fleet,
                     "--builddir", BUILD_DIR)
    assert rc == 1 and "already holds a fleet" in err, err
