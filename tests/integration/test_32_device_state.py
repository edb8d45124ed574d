"""32: live device state, heartbeat, health alarms and the config version
(issue 5), with a real broker, controller (API) and agent:

- the agent's retained state reaches GET /api/v1/recorders/{id}/state
  (online, last_seen, the message itself, cfg_version applied vs
  published); another space gets 404;
- a channel whose source is missing raises a "channel" alarm, listed by
  GET /api/v1/alarms, which clears once the source appears;
- a config change through the API (a channel's cloud backup) reaches the
  running agent, which applies it without restart and reports the new
  version, visible through GET state;
- SIGSTOP (a half-open link: no last will) -> offline after the
  controller's offline_after_s, with an "offline" alarm; SIGCONT -> online;
- kill -9 -> offline through the last will."""

import json
import shutil
import signal
import time

import pytest

from c2dtest import file_channel, wait_for
from test_22_quota import MIB, Space, chan_status

DEV = "rec-st"
OFFLINE_AFTER_S = 3


def state(sp, rec, tok=None):
    return sp.api.ok("GET", "/api/v1/recorders/%d/state" % rec["id"], token=tok or sp.tok)


def alarms(sp, rec=None):
    q = "?recorder_id=%d" % rec["id"] if rec else ""
    return sp.ok("GET", "/api/v1/alarms" + q)["items"]


@pytest.mark.timeout(300)
def test_device_state(make_controller, make_agent, media, tmp_path):
    sp = Space(make_controller, offline_after_s=OFFLINE_AFTER_S)
    rec, chans = sp.recorder(DEV, 2)
    vd = sp.configure(sp.vdisk(64 * MIB), rec, chans, DEV)

    # Nothing heard yet.
    st = state(sp, rec)
    assert st["online"] is False and st["last_seen"] is None and st["state"] is None, st
    assert st["device"] == DEV and st["recorder_id"] == rec["id"], st

    late = tmp_path / "late-source.ts"  # channel 2's source: missing for now
    agent = make_agent(DEV, [file_channel(1, media.h264_short, realtime=True, loop=True),
                             file_channel(2, late, realtime=True, loop=True)],
                       segment_seconds=2, state_interval_s=1, recorder_retention_s=86400)
    # A long keepalive: a stopped agent must not be found out by the
    # broker (and its will) before the controller's own timer.
    agent.cfg["broker"]["keepalive_s"] = 60
    agent.conf.write_text(json.dumps(agent.cfg))
    agent.start(exit_when_done=False)

    def online():
        s = state(sp, rec)
        return s["online"] and s["state"] and s["cfg_version"]["applied"] is not None and s
    st = wait_for(online, 30, "the agent's state in the API", on_timeout=agent.proc.tail)
    assert st["last_seen"].endswith("Z"), st
    msg = st["state"]
    for k in ("uptime_s", "upload_bps", "spool", "channels", "cfg_version"):
        assert k in msg, (k, msg)
    assert msg["disk"] == "ok" and msg["recorder_retention_s"] == 86400, msg
    assert {"segments", "bytes", "oldest_age_s"} <= set(msg["spool"]), msg["spool"]
    assert all("last_segment_age_s" in c for c in msg["channels"]), msg["channels"]

    # Another space does not see it.
    st404, _, _ = sp.api.req("GET", "/api/v1/recorders/%d/state" % rec["id"], token=sp.dist)
    assert st404 == 404
    st404, _, _ = sp.api.req("GET", "/api/v1/alarms?recorder_id=%d" % rec["id"], token=sp.dist)
    assert st404 == 404

    # Channel 2 has no source: an alarm, with its start time.
    def ch2_alarm():
        return [a for a in alarms(sp) if a["code"] == "channel" and a["channel"] == 2]
    found = wait_for(ch2_alarm, 30, "the channel 2 alarm", on_timeout=agent.proc.tail)
    assert found[0]["recorder_id"] == rec["id"] and found[0]["device"] == DEV, found
    since = found[0]["since_us"]
    assert any(a["code"] == "channel" for a in state(sp, rec)["alarms"])
    time.sleep(1.5)
    again = ch2_alarm()
    assert again and again[0]["since_us"] == since, (found, again)  # the same alarm
    # The source appears: the channel records, the alarm clears.
    shutil.copy(media.h264_short, late)
    wait_for(lambda: not ch2_alarm(), 60, "the channel 2 alarm to clear",
             on_timeout=agent.proc.tail)

    # A config change through the API reaches the running agent.
    wait_for(lambda: (lambda v: v["applied"] == v["published"])(state(sp, rec)["cfg_version"]),
             30, "the agent to run the published config")
    v0 = state(sp, rec)["cfg_version"]["applied"]
    pid = agent.proc.pid
    sp.ok("PUT", "/api/v1/vdisks/%d/channels" % vd["id"],
          {"channels": [{"channel_id": chans[2]["id"], "cloud_backup": False}]})

    def applied():
        s = state(sp, rec)
        v = s["cfg_version"]
        return (v["published"] is not None and v["published"] > v0 and
                v["applied"] == v["published"] and
                chan_status(s["state"], 2)["backup"] is False and s)
    wait_for(applied, 30, "the new config version applied", on_timeout=agent.proc.tail)
    assert agent.proc.pid == pid and agent.proc.alive()  # no restart

    # A half-open link: no will; the controller's timer marks it offline.
    agent.proc.signal_group(signal.SIGSTOP)
    t0 = time.monotonic()
    try:
        def offline():
            s = state(sp, rec)
            return not s["online"] and s
        s = wait_for(offline, OFFLINE_AFTER_S + 10, "offline after the heartbeat stopped")
        assert time.monotonic() - t0 >= OFFLINE_AFTER_S - 1.5
        assert s["state"]["online"] is True, s  # not the will: the timer
        assert [a["code"] for a in s["alarms"]] == ["offline"], s["alarms"]
        assert [a["code"] for a in alarms(sp, rec)] == ["offline"]
    finally:
        agent.proc.signal_group(signal.SIGCONT)
    wait_for(lambda: state(sp, rec)["online"], 20, "online again after SIGCONT")
    wait_for(lambda: not [a for a in alarms(sp, rec) if a["code"] == "offline"], 10,
             "the offline alarm to clear")

    # kill -9: the broker publishes the last will at once.
    agent.kill9()
    s = wait_for(lambda: (lambda s: s["state"]["online"] is False and s)(state(sp, rec)),
                 OFFLINE_AFTER_S + 10, "the last will in the API")
    assert s["online"] is False and [a["code"] for a in s["alarms"]] == ["offline"], s
    assert "refused" not in sp.ctl.log_text()
