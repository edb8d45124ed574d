"""21: the agent's side of virtual-disk quotas (issue 4) against a real
broker and a real c2d-agent, with the controller's role played by a paho
client holding the controller's certificate (FakeController below), so the
answers are scripted per channel.

- The retained device config (c2d/v1/d/{device}/cfg) with channel 2's
  backup off: the agent applies it (cfg_version in its state), uploads only
  channel 1 and deletes channel 2's segments as they are made, counted as
  dropped_backup_off; switched back on, channel 2 uploads again.
- quota_full: the segment stays in the agent's spool, the channel is held
  (state "quota_full") while the other channel goes on, the agent asks
  again after its backoff (30 s), and at once when a new config version
  arrives; then the segment arrives and leaves the spool.
- The applied config is saved in the state directory and reported by
  `c2d-agent status` after the agent stopped."""

import json
import struct
import threading
import time

import pytest

from c2dtest import MqttClient, ack_topic, file_channel, seg_topic, wait_for

DEV = "rec-q"


def cfg_topic(dev):
    return "c2d/v1/d/%s/cfg" % dev


def devcfg(version, backup):
    """The cfg payload (proto/README.md, "Device config"); backup: {ch: bool}."""
    return json.dumps({"v": 1, "version": version,
                       "channels": [{"ch": ch, "backup": b} for ch, b in sorted(backup.items())]}).encode()


class FakeController:
    """Answers the agent on its ack topic the way the controller would:
    begin -> offset 0 (or a rejection), each chunk -> its end offset,
    end -> committed (or a rejection). policy[ch] is "accept" or a
    rejection reason ("backup_off", "quota_full", ...) sent for begin.
    Every begin is recorded as (monotonic time, ch, start)."""

    def __init__(self, broker, pki, dev):
        self.dev = dev
        self.policy = {}
        self.begins = []
        self.committed = []
        self.rejected = []
        self.sizes = {}
        self.lock = threading.Lock()
        self.c = MqttClient(broker, pki.cert("c2d-controller"), "fake-ctl",
                            subscribe=[seg_topic(dev)])
        self.stop = False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def publish_cfg(self, payload):
        """Retained, QoS 1, as the controller publishes it."""
        self.c.c.publish(cfg_topic(self.dev), payload, qos=1, retain=True).wait_for_publish(10)

    def _ack(self, ch, start, status, offset, reason=None):
        m = {"v": 1, "t": "ack", "ch": ch, "start": start, "status": status, "offset": offset}
        if reason:
            m["reason"] = reason
        self.c.c.publish(ack_topic(self.dev), json.dumps(m).encode(), qos=1)

    def _run(self):
        while not self.stop:
            m = self.c.get(0.2)
            if m is None:
                continue
            payload = m[1]
            if payload[:4] == b"C2DK":
                _, _, _, ch, start, offset, length, _ = struct.unpack(">4sBBHqQII", payload[:32])
                self._ack(ch, start, "offset", offset + length)
                continue
            msg = json.loads(payload)
            ch, start = msg["ch"], msg["start"]
            with self.lock:
                pol = self.policy.get(ch, "accept")
                if msg["t"] == "begin":
                    self.begins.append((time.monotonic(), ch, start))
                    self.sizes[(ch, start)] = msg["size"]
            if msg["t"] == "begin":
                if pol == "accept":
                    self._ack(ch, start, "offset", 0)
                else:
                    with self.lock:
                        self.rejected.append((ch, start, pol))
                    self._ack(ch, start, "rejected", 0, pol)
            elif msg["t"] == "end":
                size = self.sizes.get((ch, start), 0)
                with self.lock:
                    self.committed.append((ch, start))
                self._ack(ch, start, "committed", size)

    def begins_of(self, ch, since=0.0):
        with self.lock:
            return [(t, s) for t, c, s in self.begins if c == ch and t >= since]

    def committed_of(self, ch):
        with self.lock:
            return [s for c, s in self.committed if c == ch]

    def close(self):
        self.stop = True
        self.t.join(5)
        self.c.close()


def status_file(agent):
    p = agent.state_dir / "status.json"
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def channel(st, ch):
    return next(c for c in st["channels"] if c["id"] == ch)


@pytest.mark.timeout(300)
def test_cfg_backup_and_quota(broker, pki, make_agent, media):
    ctl = FakeController(broker, pki, DEV)
    try:
        # Channel 2's backup is off before the agent ever connects.
        ctl.policy[2] = "backup_off"  # what the real controller answers
        ctl.publish_cfg(devcfg(1, {2: False}))

        chans = [file_channel(1, media.h264_short, realtime=True, loop=True),
                 file_channel(2, media.h264_short, realtime=True, loop=True)]
        agent = make_agent(DEV, chans, segment_seconds=2, keep_sent_dir="")
        agent.start(exit_when_done=False)

        def applied(version):
            st = status_file(agent)
            return st if st and st.get("cfg_version") == version else None

        st = wait_for(lambda: applied(1), 20, "cfg version 1 in status.json",
                      on_timeout=agent.proc.tail)
        t_applied = time.monotonic()
        assert channel(st, 2)["backup"] is False and channel(st, 1)["backup"] is True

        # Channel 1 uploads; channel 2's segments are deleted as they come.
        wait_for(lambda: len(ctl.committed_of(1)) >= 3, 30, "three channel 1 commits",
                 on_timeout=agent.proc.tail)

        def dropped2():
            s = status_file(agent)
            return s and channel(s, 2)["upload"]["dropped_backup_off"] >= 3 and s
        st = wait_for(dropped2, 30, "channel 2 segments dropped (backup off)",
                      on_timeout=agent.proc.tail)
        assert channel(st, 2)["upload"]["state"] == "backup_off", channel(st, 2)
        assert st["upload"]["dropped_backup_off"] >= 3
        late = ctl.begins_of(2, since=t_applied + 1.0)
        assert late == [], "channel 2 begins after its backup went off: %s" % late
        assert "cloud backup is off" in agent.proc.text()
        # at most the segment just made waits for the uploader's next poll
        assert len(list((agent.state_dir / "spool" / "2").glob("*.ts"))) <= 1

        # Channel 2 back on: it uploads again from its next segment.
        ctl.policy[2] = "accept"
        ctl.publish_cfg(devcfg(2, {1: True, 2: True}))
        wait_for(lambda: applied(2), 20, "cfg version 2", on_timeout=agent.proc.tail)
        wait_for(lambda: len(ctl.committed_of(2)) >= 2, 30, "channel 2 commits",
                 on_timeout=agent.proc.tail)

        # quota_full for channel 1: kept, held, retried after 30 s.
        ctl.policy[1] = "quota_full"
        t_q = time.monotonic()
        first = wait_for(lambda: ctl.begins_of(1, since=t_q), 20, "a channel 1 begin")[0]
        held_start = first[1]

        def held():
            s = status_file(agent)
            return s and channel(s, 1)["upload"]["state"] == "quota_full" and s
        st = wait_for(held, 10, "channel 1 held by quota_full", on_timeout=agent.proc.tail)
        assert channel(st, 1)["upload"]["last_reason"] == "quota_full"
        assert (agent.state_dir / "spool" / "1" / ("%d.ts" % held_start)).exists()
        assert channel(st, 1)["queue"]["segments"] >= 1
        # Channel 2 goes on meanwhile; channel 1 does not spin.
        n2 = len(ctl.committed_of(2))
        time.sleep(6)
        assert len(ctl.committed_of(2)) >= n2 + 2, "channel 2 stopped while channel 1 is held"
        again = ctl.begins_of(1, since=first[0] + 0.5)
        assert again == [], "channel 1 asked again during its hold: %s" % again
        # The hold ends: the same segment is begun again (and refused again).
        retry = wait_for(lambda: ctl.begins_of(1, since=first[0] + 0.5), 40,
                         "channel 1's retry after the hold", on_timeout=agent.proc.tail)[0]
        assert retry[1] == held_start
        assert 25 <= retry[0] - first[0] <= 35, "retried after %.1f s" % (retry[0] - first[0])
        assert (agent.state_dir / "spool" / "1" / ("%d.ts" % held_start)).exists()

        # A new config (capacity raised) releases it at once.
        time.sleep(1)
        ctl.policy[1] = "accept"
        t_cfg = time.monotonic()
        ctl.publish_cfg(devcfg(3, {1: True, 2: True}))
        wait_for(lambda: held_start in ctl.committed_of(1), 10,
                 "the held segment committed after the new config", on_timeout=agent.proc.tail)
        assert time.monotonic() - t_cfg < 10
        wait_for(lambda: not (agent.state_dir / "spool" / "1" / ("%d.ts" % held_start)).exists(),
                 10, "the held segment to leave the spool")
        st = wait_for(lambda: (lambda s: s and channel(s, 1)["upload"]["state"] == "ok" and s)(
            status_file(agent)), 10, "channel 1 back to ok")
        assert st["cfg_version"] == 3

        # The applied config is kept in the state dir for a restart.
        assert agent.stop() == 0, agent.proc.tail()
        saved = json.loads((agent.state_dir / "devcfg.json").read_text())
        assert saved["version"] == 3
        assert {c["ch"]: c["backup"] for c in saved["channels"]} == {1: True, 2: True}
        assert agent.status()["cfg_version"] == 3
    finally:
        ctl.close()


@pytest.mark.timeout(120)
def test_cfg_persisted_and_bad_cfg(broker, pki, make_agent, media):
    """A restart without a cfg on the broker applies the saved one; a cfg
    that does not decode is ignored with a warning (the old one stays)."""
    ctl = FakeController(broker, pki, DEV)
    try:
        ctl.policy[2] = "backup_off"
        ctl.publish_cfg(devcfg(5, {2: False}))
        chans = [file_channel(1, media.h264_short, realtime=True, loop=True),
                 file_channel(2, media.h264_short, realtime=True, loop=True)]
        agent = make_agent(DEV, chans, segment_seconds=2, keep_sent_dir="")
        agent.start(exit_when_done=False)
        wait_for(lambda: (status_file(agent) or {}).get("cfg_version") == 5, 20, "cfg 5",
                 on_timeout=agent.proc.tail)

        # Not decodable: ignored, version 5 stays.
        ctl.publish_cfg(b'{"v":1,"version":6,"channels":[{"ch":2,"backup":true,"x":1}]}')
        wait_for(lambda: "device config on c2d/v1/d/%s/cfg ignored (unknown_field: "
                 "channels[0].x)" % DEV in agent.proc.text(), 10, "the warning",
                 on_timeout=agent.proc.tail)
        time.sleep(0.5)
        st = status_file(agent)
        assert st["cfg_version"] == 5 and channel(st, 2)["backup"] is False
        assert agent.stop() == 0

        # Clear the retained cfg: the restarted agent runs on the saved one.
        ctl.c.c.publish(cfg_topic(DEV), b"", qos=1, retain=True).wait_for_publish(10)
        t0 = time.monotonic()
        agent.start(exit_when_done=False)
        st = wait_for(lambda: (lambda s: s and s.get("connected") and s)(status_file(agent)), 20,
                      "the restarted agent connected", on_timeout=agent.proc.tail)
        assert st["cfg_version"] == 5 and channel(st, 2)["backup"] is False
        wait_for(lambda: len(ctl.committed_of(1)) >= 2, 30, "channel 1 uploads",
                 on_timeout=agent.proc.tail)
        time.sleep(2)
        late = ctl.begins_of(2, since=t0)
        assert late == [], "channel 2 uploaded after a restart with the saved cfg: %s" % late
        assert agent.stop() == 0
    finally:
        ctl.close()
