"""43: a full spool never evicts the segment being uploaded (issue 6).

The agent's spool evicts its oldest unsent segments when a new one does not
fit, but not one the uploader has pinned: the segment it is sending or
awaiting the controller's ack for. Evicting that one made the agent report
as dropped a segment the controller then stored, and left an abandoned
partial upload at the controller.

Here a recording is read in real time into a 1 MiB spool (a few segments)
while the controller is SIGSTOPped, so the agent's first segment hangs in
flight (begin sent, no answer) and later segments overflow the spool. Once
the agent reports drops, the segment its lane holds is noted and the
controller resumed; everything drains. Then:
- that segment is stored, identical to the agent's kept copy, and is not
  among the segments the agent logged as evicted ("segment evicted ...");
- at least one evicted segment is newer than it (oldest-first eviction would
  have taken it), none evicted is stored, and the per-segment lines agree
  with the "dropped N unsent segments" totals;
- c2dtest.account() explains every segment (stored or dropped, none stored
  after being reported dropped); no partial upload is left; the books match
  the store."""

import json
import os
import re
import signal
import time

import pytest

from c2dtest import account, check_store_consistent, file_channel, run, sha256_file, wait_for

DEV = "rec-sp"
CH = 1
SEG_S = 2
SPOOL = 1 << 20  # the agent's minimum: two or three of these segments
RE_EVICTED = r"segment evicted ch=(\d+) start=(-?\d+) size=\d+: spool full"
RE_TOTAL = r"spool full after channel \d+'s segment: dropped (\d+) unsent segments"


def big_media(media):
    """12 s of H.264 at about 1.5 Mbit/s (noise keeps the encoder from
    undershooting): 2 s segments of ~380 KB, so a 1 MiB spool overflows at
    the third. Cached next to the shared media."""
    out = media.dir / "sp_h264_1m5_12s.ts"
    if not out.exists():
        tmp = media.dir / ("tmp-%d-sp_h264_1m5_12s.ts" % os.getpid())
        run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
             "testsrc2=size=640x360:rate=25:duration=12", "-vf", "noise=alls=30:allf=t",
             "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "50",
             "-keyint_min", "50", "-sc_threshold", "0", "-b:v", "1500k", "-maxrate", "1500k",
             "-bufsize", "1500k", "-f", "mpegts", tmp], timeout=120)
        tmp.rename(out)
    return out


def status(agent):
    try:
        return json.loads((agent.state_dir / "status.json").read_text())
    except (OSError, ValueError):
        return None


@pytest.mark.timeout(120)
def test_inflight_segment_survives_full_spool(media, make_controller, make_agent):
    src = big_media(media)
    ctl = make_controller()
    # The controller stays stopped for several seconds: a longer keepalive
    # keeps its broker session (and the agent's queued begin) alive.
    ctl.cfg["broker"]["keepalive_s"] = 60
    ctl.conf.write_text(json.dumps(ctl.cfg, indent=2))
    ctl.start()
    wait_for(lambda: "connected to" in ctl.log_text(), 20, "controller connected",
             on_timeout=ctl.diag)
    time.sleep(0.5)  # its subscribe goes out right after the connect
    ctl.proc.signal_group(signal.SIGSTOP)
    stopped = True
    try:
        agent = make_agent(DEV, [file_channel(CH, src, realtime=True)], segment_seconds=SEG_S,
                           spool_max_bytes=SPOOL, ack_timeout_s=3, state_interval_s=1)
        agent.start()

        # While the controller is stopped nothing is acknowledged, so the
        # segment the lane holds cannot change: note it once drops happened.
        held = {}

        def overflowed():
            st = status(agent)
            if not st or st["spool"]["dropped_segments"] < 1:
                return False
            up = next(c for c in st["channels"] if c["id"] == CH)["upload"]
            if up["phase"] == "idle" or not up["start_us"]:
                return False
            held["start"] = int(up["start_us"])
            return True

        wait_for(overflowed, 40, "the spool to overflow with a segment in flight",
                 on_timeout=agent.proc.tail)
        ctl.proc.signal_group(signal.SIGCONT)
        stopped = False
        agent.wait_done(90, ctl)
    finally:
        if stopped:
            ctl.proc.signal_group(signal.SIGCONT)

    x = (CH, held["start"])
    text = agent.proc.text()
    evicted = {(int(c), int(s)) for c, s in re.findall(RE_EVICTED, text)}
    totals = [int(n) for n in re.findall(RE_TOTAL, text)]
    segs = [s for s in ctl.segments() if s["device"] == DEV]
    stored = {(s["channel"], s["start_us"]): s for s in segs}
    print("in flight %s; evicted %s; stored %d" % (x, sorted(evicted), len(stored)))

    assert evicted, "the spool never overflowed\n" + agent.proc.tail()
    assert sum(totals) == len(evicted), (totals, sorted(evicted))
    assert len(re.findall(RE_EVICTED, text)) == len(evicted), "a segment was evicted twice"
    # The segment in flight when the spool overflowed: kept, stored, intact.
    assert x not in evicted, "the in-flight segment %s was evicted" % (x,)
    assert any(s > x[1] for _, s in evicted), (
        "no evicted segment is newer than the in-flight one: the test did not exercise the pin")
    assert x in stored, "the in-flight segment %s is not stored" % (x,)
    kept = agent.kept()
    assert x in kept and sha256_file(kept[x]) == stored[x]["sha256"]
    # What the agent reports dropped is really absent from the controller.
    assert not (evicted & set(stored)), "reported dropped but stored: %s" % sorted(
        evicted & set(stored))
    acc = account(DEV, agent, segs, None, SEG_S)
    assert acc["dropped"] == len(evicted) and acc["dropped_stored"] == 0, acc
    assert acc["stored"] == len(stored) and acc["waiting"] == 0, acc
    assert agent.spool_files() == []
    assert ctl.partial_files() == [], "abandoned partial uploads: %s" % ctl.partial_files()
    check_store_consistent(ctl)
    assert ctl.alive()
