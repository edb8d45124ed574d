"""02: a live rtsp:// source (a real GstRtspServer, rtsp_server.py) uploads
as segments that arrive while the camera streams, play (ffprobe), start on
a keyframe, last about segment_seconds, and follow each other on the
timeline without holes. Packets cannot be compared byte for byte with the
file here (RTP repacketizes), so frame counts stand in for completeness."""

import filecmp
import time

import pytest

from c2dtest import Packets, check_store_consistent, free_port, probe_ok, wait_for

DEV = "rec-a"
SEG_S = 4
FPS = 25


def rtsp_channel(url, ch=1):
    return {"id": ch, "name": "rtsp%d" % ch, "source": url, "realtime": False, "loop": False}


def check_segments(ctl, agent, segs, t0, t1, allow_gaps_after=()):
    """segs: committed segments of one channel in start order; t0/t1 wall
    clock (s) around the streaming."""
    check_store_consistent(ctl, ctl.segments())
    kept = agent.kept()
    for i, s in enumerate(segs):
        path = ctl.data_dir / s["path"]
        pk = Packets(path, probe_ok(path))
        assert pk.codec == {"video": "h264", "audio": "aac"}, (path, pk.codec)
        video = pk.by_type["video"]
        assert video[0][2], "segment %s does not start with a keyframe" % path
        dur = s["duration_us"] / 1e6
        assert 0 < dur <= SEG_S + 2.1, "segment %s lasts %.3f s" % (path, dur)
        if 0 < i < len(segs) - 1 and i not in allow_gaps_after and i - 1 not in allow_gaps_after:
            assert dur >= SEG_S - 2.1, "segment %s lasts %.3f s" % (path, dur)
        # no frame lost inside: as many frames as the video spans at 25 fps
        # (the first segment may begin with audio from before the first
        # keyframe, so the segment's own duration is not used here)
        frames = len(video)
        span = float(video[-1][1] - video[0][1]) + 1.0 / FPS
        assert abs(frames - span * FPS) <= 2, "segment %s: %d video frames over %.3f s of video" % (
            path, frames, span)
        assert span <= dur + 0.1, "segment %s: %.3f s of video in a %.3f s segment" % (path, span, dur)
        # the agent's copy: kept after the ack, or still in its spool when it
        # was stopped before the `committed` ack reached it
        k = (s["channel"], s["start_us"])
        mine = kept.get(k) or agent.state_dir / "spool" / str(k[0]) / ("%d.ts" % k[1])
        assert mine.exists(), "stored %s is neither in keep_sent_dir nor in the spool" % path
        assert filecmp.cmp(mine, path, shallow=False), "stored %s differs from the agent's %s" % (
            path, mine)
        # live source: the segment's start is wall clock time of the camera
        assert t0 - 5 <= s["start_us"] / 1e6 <= t1 + 5, (
            "segment start %d is not within the streaming time [%d, %d]" % (s["start_us"], t0, t1))
    for i, (a, b) in enumerate(zip(segs, segs[1:])):
        gap = (b["start_us"] - a["start_us"] - a["duration_us"]) / 1e6
        if i in allow_gaps_after:
            assert gap >= -0.1, "segments overlap by %.3f s at %d" % (-gap, b["start_us"])
        else:
            assert abs(gap) < 0.25, ("segment at %d (%.3f s) and the next at %d leave a gap of %.3f s"
                                     % (a["start_us"], a["duration_us"] / 1e6, b["start_us"], gap))


@pytest.mark.timeout(300)
def test_rtsp_segments_arrive(media, rtsp_server, make_controller, make_agent):
    url, server = rtsp_server(media.h264_aac)
    ctl = make_controller().start()
    agent = make_agent(DEV, [rtsp_channel(url)], segment_seconds=SEG_S)
    t0 = time.time()
    agent.start(exit_when_done=False)

    def enough():
        assert agent.proc.alive(), "agent exited\n" + agent.proc.tail()
        return len(ctl.segments()) >= 5
    wait_for(enough, 120, "5 segments from the RTSP camera",
             on_timeout=lambda: agent.proc.tail() + "\n" + ctl.diag(), interval=0.5)
    # segments arrive while the camera streams, not all at the end
    assert server.alive()
    rc = agent.stop()
    t1 = time.time()
    assert rc == 0, "agent exit code %s on SIGTERM\n%s" % (rc, agent.proc.tail())
    segs = [s for s in ctl.segments() if s["channel"] == 1]
    assert len(segs) >= 5
    check_segments(ctl, agent, segs, t0, t1)
    assert ctl.alive()


@pytest.mark.timeout(300)
def test_rtsp_camera_restart(media, rtsp_server, make_controller, make_agent):
    """The camera goes away for a few seconds and comes back on the same
    address: the agent reconnects by itself and segments keep arriving."""
    port = free_port()
    url, server = rtsp_server(media.h264_aac, name="rtsp1", extra=["--port", str(port)])
    ctl = make_controller().start()
    agent = make_agent(DEV, [rtsp_channel(url)], segment_seconds=SEG_S)
    t0 = time.time()
    agent.start(exit_when_done=False)
    diag = lambda: agent.proc.tail() + "\n" + ctl.diag()  # noqa: E731
    wait_for(lambda: len(ctl.segments()) >= 2, 120, "2 segments", on_timeout=diag, interval=0.5)
    server.kill9()
    t_down = time.time()
    time.sleep(4)
    url2, server2 = rtsp_server(media.h264_aac, name="rtsp2", extra=["--port", str(port)])
    assert url2 == url
    wait_for(lambda: len([s for s in ctl.segments() if s["start_us"] / 1e6 > t_down + 1]) >= 2, 120,
             "2 segments after the camera came back", on_timeout=diag, interval=0.5)
    assert agent.proc.alive(), agent.proc.tail()
    agent.stop()
    t1 = time.time()
    segs = [s for s in ctl.segments() if s["channel"] == 1]
    # the outage may cut one segment short and leave one hole
    holes = [i for i, (a, b) in enumerate(zip(segs, segs[1:]))
             if a["start_us"] / 1e6 < t_down + 0.5 and b["start_us"] / 1e6 > t_down]
    check_segments(ctl, agent, segs, t0, t1, allow_gaps_after=holes)
