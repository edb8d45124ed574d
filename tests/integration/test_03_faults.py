"""03: faults in the middle of an upload lose nothing and store nothing twice.

The broker restarted, the controller killed with SIGKILL, the agent killed
with SIGKILL (mid upload and at random moments, including while it writes
its spool): afterwards every source packet is in the store exactly once
(as in 01: packet comparison against the source), no segment is stored
twice, usage counts equal the files, and resuming re-sent at most the
chunks that were in flight (window_chunks per interruption), measured by a
spy subscribed to the seg topic.

The agent is slowed down with rate_limit_bps and small chunks so that the
faults land mid-upload. C2D_TEST_SEED fixes the random kill times."""

import os
import random
import re
import time

import pytest

from c2dtest import SegSpy, check_upload, file_channel, wait_for

DEV = "rec-a"
CH = 1
CHUNK = 16384
WINDOW = 4
SLOW = dict(chunk_bytes=CHUNK, window_chunks=WINDOW, rate_limit_bps=250_000, ack_timeout_s=3)


@pytest.fixture
def spy(broker, pki):
    s = SegSpy(broker, pki)
    yield s
    s.close()


def mid_upload(ctl, min_committed=1):
    """True once min_committed segments are stored and another one is
    partly uploaded (a non-empty partial file)."""
    if len(ctl.segments()) < min_committed:
        return False
    return any(f.stat().st_size > 0 for f in ctl.partial_files())


def check_resend(spy, ctl, interruptions):
    assert spy.frames(), "the spy saw no chunk frame"
    chunks, nbytes = spy.resent()
    print("re-sent: %d chunks, %d bytes over %d interruption(s) (spy saw %d frames)"
          % (chunks, nbytes, interruptions, len(spy.frames())))
    assert chunks <= WINDOW * interruptions, (
        "%d chunks (%d bytes) were sent more than once over %d interruption(s); at most "
        "window_chunks=%d per interruption may be in flight" % (chunks, nbytes, interruptions, WINDOW))
    # The controller logs `resume device=.. ch=.. start=.. offset=N` when it
    # answers a begin with a non-zero offset. After a controller kill the
    # broker's persistent session may deliver the queued chunks without any
    # new begin, so a run can legitimately have no resume line.
    resumes = re.findall(r"resume device=(\S+) ch=(\d+) start=(\d+) offset=(\d+)", ctl.log_text())
    if not resumes:
        print("controller log has no resume line: the session carried the upload through")
    else:
        assert all(int(r[3]) > 0 for r in resumes), resumes


@pytest.mark.timeout(600)
def test_broker_restart_mid_upload(media, broker, spy, make_controller, make_agent):
    ctl = make_controller().start()
    agent = make_agent(DEV, [file_channel(CH, media.h264_aac)], **SLOW)
    agent.start()
    # three crashes (SIGKILL), each while a segment is partly uploaded and
    # the agent is sending: the TLS connection breaks mid-record
    for n in range(3):
        wait_for(lambda: mid_upload(ctl, 2 + 2 * n), 90, "an upload in progress",
                 on_timeout=lambda: ctl.diag() + "\n" + agent.proc.tail(), interval=0.05)
        broker.restart(down_s=2.0)
        spy.reconnect()
    # the agent reconnects with backoff (at most 30 s between attempts)
    agent.wait_done(240, ctl)
    assert ctl.alive(), "controller died with the broker\n" + ctl.diag()
    check_upload(ctl, agent, DEV, {CH: [media.h264_aac]}, 10)
    check_resend(spy, ctl, 3)


@pytest.mark.timeout(600)
def test_broker_graceful_restart_mid_upload(media, broker, spy, make_controller, make_agent):
    """The same with a clean broker shutdown (SIGTERM: DISCONNECT sent)."""
    ctl = make_controller().start()
    agent = make_agent(DEV, [file_channel(CH, media.h264_aac)], **SLOW)
    agent.start()
    wait_for(lambda: mid_upload(ctl, 2), 180, "an upload in progress", on_timeout=ctl.diag,
             interval=0.05)
    broker.restart(down_s=2.0, hard=False)
    spy.reconnect()
    agent.wait_done(420, ctl)
    check_upload(ctl, agent, DEV, {CH: [media.h264_aac]}, 10)
    check_resend(spy, ctl, 1)


@pytest.mark.timeout(600)
def test_controller_kill9_mid_upload(media, spy, make_controller, make_agent):
    ctl = make_controller().start()
    agent = make_agent(DEV, [file_channel(CH, media.h264_aac)], **SLOW)
    agent.start()
    wait_for(lambda: mid_upload(ctl, 2), 180, "an upload in progress", on_timeout=ctl.diag,
             interval=0.05)
    ctl.kill9()
    partial = {f: f.stat().st_size for f in ctl.partial_files()}
    assert partial, "no partial upload at the kill"
    time.sleep(2)
    ctl.start()
    agent.wait_done(420, ctl)
    check_upload(ctl, agent, DEV, {CH: [media.h264_aac]}, 10)
    check_resend(spy, ctl, 1)


@pytest.mark.timeout(600)
def test_controller_kill9_twice(media, spy, make_controller, make_agent):
    """Killed again right after coming back (it may be replaying a begin)."""
    ctl = make_controller().start()
    agent = make_agent(DEV, [file_channel(CH, media.h264_aac)], **SLOW)
    agent.start()
    wait_for(lambda: mid_upload(ctl, 1), 180, "an upload in progress", on_timeout=ctl.diag,
             interval=0.05)
    ctl.kill9()
    time.sleep(1)
    ctl.start()
    time.sleep(0.7)
    ctl.kill9()
    time.sleep(1)
    ctl.start()
    agent.wait_done(420, ctl)
    check_upload(ctl, agent, DEV, {CH: [media.h264_aac]}, 10)
    check_resend(spy, ctl, 2)


@pytest.mark.timeout(600)
def test_agent_kill9_mid_upload(media, spy, make_controller, make_agent):
    ctl = make_controller().start()
    agent = make_agent(DEV, [file_channel(CH, media.h264_aac)], **SLOW)
    agent.start()
    wait_for(lambda: mid_upload(ctl, 2), 180, "an upload in progress", on_timeout=ctl.diag,
             interval=0.05)
    agent.kill9()
    agent.start()
    agent.wait_done(420, ctl)
    check_upload(ctl, agent, DEV, {CH: [media.h264_aac]}, 10)
    check_resend(spy, ctl, 1)


@pytest.mark.timeout(900)
def test_agent_kill9_at_random_moments(media, spy, make_controller, make_agent):
    """Several kills: right after start (segmenting, writing the spool),
    then at random moments. The agent reads its checkpoint back each time."""
    seed = int(os.environ.get("C2D_TEST_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    print("C2D_TEST_SEED=%d" % seed)
    ctl = make_controller().start()
    agent = make_agent(DEV, [file_channel(CH, media.h264_aac), file_channel(2, media.h265)], **SLOW)
    delays = [0.05, 0.2, rng.uniform(0.3, 1.0), rng.uniform(1.0, 4.0), rng.uniform(1.0, 4.0),
              rng.uniform(4.0, 8.0)]
    kills = 0
    for d in delays:
        agent.start()
        time.sleep(d)
        if not agent.proc.alive():
            break
        agent.kill9()
        kills += 1
    agent.start()
    agent.wait_done(600, ctl)
    try:
        check_upload(ctl, agent, DEV, {CH: [media.h264_aac], 2: [media.h265]}, 10)
        check_resend(spy, ctl, kills)
    except AssertionError as e:
        raise AssertionError("%s\n(C2D_TEST_SEED=%d, kill delays %s)" % (e, seed, delays[:kills]))
