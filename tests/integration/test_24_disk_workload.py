"""24: a randomized workload against one controller with two virtual disks
(issue 4, "What must be shown" 2).

Two recorders (real agents, two live-paced channels each) upload to one
controller: recorder A's disk overwrites when full, recorder B's stops.
Meanwhile a driver does random things through the API and MQTT: the
distributor changes capacities, the installer adds and removes bookmarks,
changes camera caps (step 2) and toggles cloud backup (step 3), a raw
client re-sends a begin for a stored segment with the device's certificate
(answer: duplicate), and the controller is killed with SIGKILL at random
points and started again. Retention sweeps run every second (nothing is
old enough to go).

Then, uploads stopped and everything settled: every sum is exact (the
details view's used_bytes = sum of its cameras = sum of the device's files;
the usage CLI likewise), the store holds each segment once with the
ledger's size and SHA-256, `c2d-controller fsck --json --hashes` finds
nothing, and every segment the agents made is accounted for: stored
intact, evicted (overwrite disk only), deleted by the agent because its
channel's backup was off, or still in the agent's spool because it was
refused (quota_full, no_disk) or in flight when the agents stopped.

The seed is printed; C2D_TEST_SEED=N replays a run's choices (not its
timing)."""

import json
import os
import random
import subprocess
import time

import pytest

from c2dtest import CONTROLLER_BIN, MqttClient, account, ack_topic, file_channel, seg_topic
from test_22_quota import MIB, Space, bookmark_on, check_disk_exact, store_settled

DURATION_S = 70
SEG_S = 2
DEVS = {"rec-wa": "overwrite", "rec-wb": "stop"}


class Down(Exception):
    """The controller is down (killed by the driver) or restarting."""


class Driver:
    def __init__(self, sp, rnd, disks, pki):
        self.sp = sp
        self.rnd = rnd
        self.disks = disks  # dev -> {"vd", "rec", "chans"}
        self.pki = pki
        self.bookmarks = []  # [(id, dev)]
        self.backup = {(dev, n): True for dev, d in disks.items() for n in d["chans"]}
        self.stats = {}
        self.bad = []  # unexpected answers: (op, request, status, body)
        self.dups = []  # (dev, ch, start, answer)
        self.kills = 0
        self.raw = {dev: MqttClient(sp.ctl.broker, pki.cert(dev), "dup-" + dev,
                                    subscribe=[ack_topic(dev)]) for dev in disks}

    def req(self, method, path, body=None, dist=False):
        if not self.sp.ctl.alive():
            raise Down()
        try:
            st, out, _ = self.sp.api.req(method, path, body,
                                         token=self.sp.dist if dist else self.sp.tok)
        except OSError:
            raise Down()
        return st, out

    def expect(self, op, method, path, body, want, dist=False):
        st, out = self.req(method, path, body, dist)
        if st not in want:
            self.bad.append((op, method, path, body, st, out))
        return st, out

    def count(self, op):
        self.stats[op] = self.stats.get(op, 0) + 1

    # ---- the operations ----

    def resize(self):
        dev = self.rnd.choice(sorted(self.disks))
        cap = self.rnd.choice([1, 1.25, 1.5, 2, 3]) * MIB
        self.expect("resize", "PUT", "/api/v1/installers/%d/vdisks/%d"
                    % (self.sp.inst["id"], self.disks[dev]["vd"]["id"]),
                    {"capacity_bytes": int(cap)}, (200,), dist=True)

    def stored(self, dev, ch=None):
        return [s for s in self.sp.ctl.segments()
                if s["device"] == dev and (ch is None or s["channel"] == ch)]

    def bookmark_add(self):
        dev = self.rnd.choice(sorted(self.disks))
        n = self.rnd.choice(sorted(self.disks[dev]["chans"]))
        segs = self.stored(dev, n)
        if not segs:
            return
        seg = self.rnd.choice(segs)
        # The second half of a segment (test_22_quota.py,
        # test_bookmark_first_segment, says why).
        st, out = self.expect("bookmark_add", "POST", "/api/v1/bookmarks",
                              bookmark_on(self.disks[dev]["chans"][n]["id"], seg, "B",
                                          second_half=True), (201, 409))
        if st == 201:
            self.bookmarks.append((out["id"], dev))
        elif out.get("error", {}).get("code") != "protection_limit":
            self.bad.append(("bookmark_add", st, out))

    def bookmark_del(self):
        if not self.bookmarks:
            return
        bid, dev = self.bookmarks.pop(self.rnd.randrange(len(self.bookmarks)))
        self.expect("bookmark_del", "DELETE", "/api/v1/bookmarks/%d" % bid, None, (204,))

    def caps(self):
        dev = self.rnd.choice(sorted(self.disks))
        vd = self.disks[dev]["vd"]
        st, d = self.req("GET", "/api/v1/vdisks/%d" % vd["id"])
        if st != 200:
            self.bad.append(("caps: get", st, d))
            return
        caps = []
        if self.rnd.random() < 0.7:
            n = self.rnd.choice(sorted(self.disks[dev]["chans"]))
            cap = self.rnd.randint(256 * 1024, d["capacity_bytes"])
            caps = [{"channel_id": self.disks[dev]["chans"][n]["id"], "cap_bytes": cap}]
        self.expect("caps", "PUT", "/api/v1/vdisks/%d/drive" % vd["id"], {"camera_caps": caps},
                    (200,))

    def backup_toggle(self):
        dev = self.rnd.choice(sorted(self.disks))
        n = self.rnd.choice(sorted(self.disks[dev]["chans"]))
        on = not self.backup[(dev, n)]
        if not on and self.rnd.random() < 0.5:
            return  # channels are mostly on: the disks fill
        st, _ = self.expect("backup", "PUT", "/api/v1/vdisks/%d/channels"
                            % self.disks[dev]["vd"]["id"],
                            {"channels": [{"channel_id": self.disks[dev]["chans"][n]["id"],
                                           "cloud_backup": on}]}, (200,))
        if st == 200:
            self.backup[(dev, n)] = on

    def duplicate(self):
        """A begin for a stored segment of the stop disk (never evicted)."""
        dev = "rec-wb"
        segs = self.stored(dev)
        if not segs or not self.sp.ctl.alive():
            return
        s = self.rnd.choice(segs)
        cl = self.raw[dev]
        cl.drain(0.05)
        msg = {"v": 1, "t": "begin", "ch": s["channel"], "start": s["start_us"],
               "dur": s["duration_us"], "size": s["size"], "sha256": s["sha256"]}
        cl.publish(seg_topic(dev), json.dumps(msg).encode())
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            m = cl.get(0.5)
            if not m:
                continue
            a = json.loads(m[1])
            if a.get("ch") == s["channel"] and a.get("start") == s["start_us"]:
                self.dups.append((dev, s["channel"], s["start_us"], a))
                return
        # no answer: the controller was killed meanwhile (it re-answers nothing)

    def kill(self):
        self.sp.ctl.kill9()
        self.kills += 1
        time.sleep(self.rnd.uniform(0, 1.5))
        self.sp.ctl.start()
        self.sp.wait_http()

    OPS = [("resize", 2), ("bookmark_add", 3), ("bookmark_del", 2), ("caps", 2),
           ("backup_toggle", 2), ("duplicate", 3)]

    def run(self, duration):
        end = time.monotonic() + duration
        next_kill = time.monotonic() + self.rnd.uniform(5, 15)
        names = [n for n, w in self.OPS for _ in range(w)]
        while time.monotonic() < end:
            time.sleep(self.rnd.uniform(0.1, 0.8))
            if time.monotonic() >= next_kill:
                self.kill()
                self.count("kill")
                next_kill = time.monotonic() + self.rnd.uniform(5, 15)
                continue
            op = self.rnd.choice(names)
            try:
                getattr(self, op)()
                self.count(op)
            except Down:
                self.count(op + " (controller down)")

    def close(self):
        for c in self.raw.values():
            c.close()


@pytest.mark.timeout(400)
def test_disk_workload(make_controller, make_agent, media, pki):
    seed = int(os.environ.get("C2D_TEST_SEED") or random.SystemRandom().randrange(1 << 31))
    print("C2D_TEST_SEED=%d" % seed)
    rnd = random.Random(seed)

    sp = Space(make_controller)
    disks = {}
    for dev, policy in sorted(DEVS.items()):
        rec, chans = sp.recorder(dev, 2)
        vd = sp.configure(sp.vdisk(1 * MIB, policy=policy), rec, chans, dev)
        disks[dev] = {"vd": vd, "rec": rec, "chans": chans}
    agents = {}
    for dev in sorted(DEVS):
        a = make_agent(dev, [file_channel(n, media.h264_aac, realtime=True, loop=True)
                             for n in (1, 2)], segment_seconds=SEG_S)
        a.start(exit_when_done=False)
        agents[dev] = a

    drv = Driver(sp, rnd, disks, pki)
    try:
        drv.run(DURATION_S)
    finally:
        drv.close()
    print("operations: %s" % json.dumps(drv.stats, sort_keys=True))

    # Uploads stop; the controller is up for the checks through the API.
    for a in agents.values():
        a.stop()
    if not sp.ctl.alive():
        sp.ctl.start()
        sp.wait_http()
    time.sleep(2)
    assert sp.ctl.alive(), sp.ctl.diag()
    assert drv.bad == [], "unexpected answers: %s" % drv.bad
    assert drv.dups, "no duplicate was tried"
    assert all(a["status"] == "duplicate" for _, _, _, a in drv.dups), [
        d for d in drv.dups if d[3]["status"] != "duplicate"]

    store_settled(sp.ctl)
    segs = sp.ctl.segments()
    paths = [s["path"] for s in segs]
    assert len(paths) == len(set(paths)), "a file is listed twice"
    report = {}
    for dev, policy in sorted(DEVS.items()):
        d, mine = check_disk_exact(sp, disks[dev]["vd"], dev, capacity_bound=False)
        u = d["usage"]
        if policy == "overwrite":
            # full: the unprotected ones make room; protected ones may exceed
            # a capacity shrunk after they were protected
            assert u["used_bytes"] <= max(d["capacity_bytes"], u["protected_bytes"]), d
        report[dev] = {k: v for k, v in account(dev, agents[dev], mine, policy, SEG_S).items()
                       if k not in ("problems", "span")}
        report[dev]["used_bytes"] = u["used_bytes"]
        report[dev]["capacity_bytes"] = d["capacity_bytes"]
    print("accounting: %s" % json.dumps(report, sort_keys=True))
    assert report["rec-wa"]["evicted"] > 0, "the overwrite disk never evicted"

    # fsck with the daemon stopped: nothing to repair.
    sp.ctl.stop()
    r = subprocess.run([str(CONTROLLER_BIN), "fsck", "-c", str(sp.ctl.conf), "--json", "--hashes"],
                       capture_output=True, timeout=120)
    out = r.stdout.decode(errors="replace")
    if r.returncode == 2 and "usage" in r.stderr.decode(errors="replace") and "fsck" not in out:
        pytest.skip("c2d-controller has no fsck command")
    assert r.returncode == 0, "fsck: exit %d\n%s\n%s" % (r.returncode, out,
                                                         r.stderr.decode(errors="replace"))
    j = json.loads(out)
    assert j["findings"] == [], out
    assert j["segments"] == len(segs) and j["files"] == len(segs), out
    assert drv.kills >= 3, "the controller was killed only %d times" % drv.kills
