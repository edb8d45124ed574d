"""A small client for the controller's HTTP/JSON API (docs/api.md), shared
by the API integration tests (test_13, test_15, test_16), and the list of
the API's routes read from the route tables in controller/api_*.c, so that
tests that must try "every route" follow the code as it grows."""

import http.client
import json
import re
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


class Api:
    """One HTTP connection per request (the controller may close after an
    error). req() answers (status, parsed JSON body or None, response)."""

    def __init__(self, port):
        self.port = port

    def req(self, method, path, body=None, token=None, raw=None, headers=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        h = dict(headers or {})
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
        if data is not None:
            h.setdefault("Content-Type", "application/json")
        if token:
            h["Authorization"] = "Bearer " + token
        try:
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            txt = r.read()
            try:
                out = json.loads(txt) if txt else None
            except ValueError:
                out = {"_raw": txt}
            r.raw = txt
            return r.status, out, r
        finally:
            c.close()

    def login(self, email, password):
        return self.req("POST", "/api/v1/session", {"email": email, "password": password})

    def token(self, email, password):
        st, body, _ = self.login(email, password)
        assert st == 201, (st, body)
        return body["token"]

    def ok(self, method, path, body=None, token=None, want=(200, 201, 204)):
        """A request that must succeed: its body (None for 204)."""
        st, out, _ = self.req(method, path, body, token=token)
        assert st in want, "%s %s %s -> %d %s" % (method, path, body, st, out)
        return out


def err(body):
    """The error code of an error answer (None if it is not one)."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return body["error"].get("code")
    return None


def start_api(make_controller, name="controller", http=None, **overrides):
    """A controller with the API on a free loopback port, not initialised
    and not started: call c.init(), c.start(), then Api(c.http_port())."""
    h = {"listen": "127.0.0.1", "port": 0}
    h.update(http or {})
    return make_controller(name, http=h, **overrides)


_KIND_ROUTES = [("GET", ""), ("POST", ""), ("GET", "/{id}"), ("PUT", "/{id}"),
                ("DELETE", "/{id}")]


def api_routes():
    """[(method, pattern)] of every route in the tables of controller/api_*.c:
    entries {"METHOD", "/api/v1/...", ...} and API_KIND_ROUTES("/api/v1/x",
    ...), which stands for five (api_int.h)."""
    out = []
    for f in sorted((REPO / "controller").glob("api_*.c")):
        txt = f.read_text()
        for m in re.finditer(r'\{\s*"(GET|POST|PUT|DELETE|PATCH)"\s*,\s*"(/api/v1/[^"]*)"', txt):
            out.append((m.group(1), m.group(2)))
        for m in re.finditer(r'API_KIND_ROUTES\(\s*"(/api/v1/[^"]*)"', txt):
            out += [(meth, m.group(1) + suffix) for meth, suffix in _KIND_ROUTES]
    assert out, "no routes found in controller/api_*.c"
    return out


def public_routes():
    """[(method, pattern)] of the routes that take no session at all
    (API_NEED_NONE: log-in, set-password): no caller, so no role to refuse."""
    out = []
    for f in sorted((REPO / "controller").glob("api_*.c")):
        for m in re.finditer(r'\{\s*"(GET|POST|PUT|DELETE|PATCH)"\s*,\s*"(/api/v1/[^"]*)"\s*,\s*'
                             r'API_NEED_NONE\b', f.read_text()):
            out.append((m.group(1), m.group(2)))
    return out


def fill(pattern, value):
    """pattern with every {param} replaced by value."""
    return re.sub(r"\{[a-z_]+\}", str(value), pattern)


def _now_us():
    return int(time.time() * 1e6)


def device_messages(api, tok, broker, pki, device, msgs, check, timeout=20):
    """Publishes msgs (dicts of proto/README.md "Events and positions") on
    device's evt topic with its certificate, again every second until
    check() (polling the API) returns something truthy, which is returned.
    Redelivery is harmless: the controller writes a message once."""
    from c2dtest import MqttClient, wait_for

    cl = MqttClient(broker, pki.cert(device), "t-%s-%d" % (device, _now_us()))
    payloads = [json.dumps(m).encode() for m in msgs]
    last = [0.0]

    def done():
        if time.monotonic() - last[0] >= 1.0:
            for p in payloads:
                cl.publish("c2d/v1/d/%s/evt" % device, p)
            last[0] = time.monotonic()
        return check()

    try:
        return wait_for(done, timeout, "the controller to store %s's messages" % device,
                        interval=0.2)
    finally:
        cl.close()


def device_event(api, tok, broker, pki, device, recorder_id, event="harsh_brake", eid="e-1"):
    """An event made by device (paired with recorder_id), as the API lists it."""
    msg = {"v": 1, "type": "event", "id": eid, "at": _now_us(), "event": event,
           "severity": "warning"}

    def stored():
        st, out, _ = api.req("GET", "/api/v1/events?recorder_id=%d" % recorder_id, token=tok)
        assert st == 200, (st, out)
        hits = [e for e in out["items"] if e.get("event") == event]
        return hits[0] if hits else None

    return device_messages(api, tok, broker, pki, device, [msg], stored)


def device_location(api, tok, broker, pki, device, dashcam_id, lat=48.8566, lon=2.3522):
    """A position of device (paired with dashcam_id), once the live map shows it."""
    msg = {"v": 1, "type": "location", "at": _now_us(), "lat": lat, "lon": lon, "speed_kmh": 50}

    def stored():
        st, out, _ = api.req("GET", "/api/v1/map/live", token=tok)
        assert st == 200, (st, out)
        return [p for p in out["items"] if p.get("dashcam_id") == dashcam_id]

    return device_messages(api, tok, broker, pki, device, [msg], stored)[0]
