"""12: device telemetry on c2d/v1/d/{device}/evt (proto/README.md, "Events
and positions").

Without the recorder API no device is paired yet, so this checks the
controller's side that needs no recorder: bad payloads are refused with
their reason in the log, a well-formed message from a device no recorder
holds is dropped with a log line, a flood of bad messages is logged at a
bounded rate, and the controller keeps running and stops cleanly. Storing
for a paired recorder is covered by tests/unit/test_devmsg.c."""

import json
import re
import time

from c2dtest import MqttClient, wait_for

AT = 1764480000000000  # 2025-11-30: in the accepted window (2000 .. now + 1 day)


def evt_topic(dev):
    return "c2d/v1/d/%s/evt" % dev


def location(**over):
    m = {"v": 1, "type": "location", "at": AT, "lat": 48.85, "lon": 2.35}
    m.update(over)
    return json.dumps(m).encode()


def refusals(ctl, dev):
    return re.findall(r"device %s: evt refused: (.*)$" % re.escape(dev), ctl.log_text(), re.M)


def test_evt_refused_and_unknown_device(broker, pki, make_controller):
    ctl = make_controller().start()
    bad = MqttClient(broker, pki.cert("rec-a"), "t-rec-a")

    # Ready once the controller is subscribed: re-send until refused.
    def ready():
        bad.publish(evt_topic("rec-a"), b"not json")
        time.sleep(0.3)
        return refusals(ctl, "rec-a")
    wait_for(ready, 20, "the controller to read the evt topic", interval=0, on_timeout=ctl.diag)

    cases = [
        (location(v=2), "unsupported_version"),
        (location(extra=1), "unknown_field: extra"),
        (location(lat=91), "out_of_range: lat"),
        (location(at=int(time.time() * 1e6) + 2 * 86400 * 10**6), "out_of_range: at"),  # > now + 1 day
        (location() + b" x", "bad_json"),
        (b'{"v":1,"type":"location","at":1764480000000000,"lat":1,"lat":1,"lon":2}',
         "duplicate_field: lat"),
        (b'{"v":1,"type":"event","id":"caf\xff","at":1764480000000000,"event":"x"}', "bad_utf8"),
        (json.dumps({"v": 1, "type": "event", "id": "e1", "at": AT,
                     "event": "Bad Kind"}).encode(), "bad_field: event"),
        (b" " * 5000, "too_large"),
    ]
    for payload, _ in cases:
        bad.publish(evt_topic("rec-a"), payload)

    def all_refused():
        got = refusals(ctl, "rec-a")
        return all(any(r.startswith(want) for r in got) for _, want in cases)
    wait_for(all_refused, 10, "every refusal in the log", on_timeout=ctl.diag)
    assert ctl.alive(), ctl.diag()

    # Well formed, but no recorder is paired with the device: dropped.
    ghost = MqttClient(broker, pki.cert("rec-ghost"), "t-rec-ghost")
    ghost.publish(evt_topic("rec-ghost"), location())
    ghost.publish(evt_topic("rec-ghost"), json.dumps(
        {"v": 1, "type": "event", "id": "e-1", "at": AT, "event": "harsh_brake"}).encode())
    wait_for(lambda: "device rec-ghost: evt dropped: no recorder paired with it"
             in ctl.log_text(), 10, "the unknown device's drop line", on_timeout=ctl.diag)

    # A flood is logged at a bounded rate (a burst of 20, then 20 a minute).
    before = len(refusals(ctl, "rec-a"))
    for i in range(60):
        bad.publish(evt_topic("rec-a"), b"[%d]" % i)
    time.sleep(1.5)
    assert ctl.alive(), ctl.diag()
    logged = len(refusals(ctl, "rec-a")) - before
    assert logged < 25, "%d lines for 60 bad messages\n%s" % (logged, ctl.diag())
    # After a refill the next line says how many were left out.
    time.sleep(3.2)
    bad.publish(evt_topic("rec-a"), b"[]")
    wait_for(lambda: re.search(r"evt refused: bad_json.*\((\d+) evt lines left out",
                               ctl.log_text()),
             10, "the count of left-out lines", on_timeout=ctl.diag)

    bad.close()
    ghost.close()
    assert ctl.stop() == 0, ctl.diag()
