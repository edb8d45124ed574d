"""Helpers for the cam2drive integration tests (imported by conftest.py and
the test files). Everything runs on 127.0.0.1 with real processes: mosquitto,
c2d-controller, c2d-agent, ffmpeg/ffprobe, openssl.

The contract these helpers code against is docs/components.md (command
lines, configuration, directories) and proto/README.md (wire protocol)."""

import filecmp
import hashlib
import json
import os
import queue
import re
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time
import zlib
from fractions import Fraction
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD_DIR = Path(os.environ.get("C2D_BUILD_DIR") or REPO / "build")
AGENT_BIN = BUILD_DIR / "agent" / "c2d-agent"
CONTROLLER_BIN = BUILD_DIR / "controller" / "c2d-controller"
HOST = "127.0.0.1"
PYTHON = "/usr/bin/python3"


class TestTimeout(Exception):
    pass


# ---- small utilities ------------------------------------------------------


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_open(port, host=HOST):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for(cond, timeout, what, interval=0.1, on_timeout=None):
    """Polls cond() until it returns something truthy, which is returned.
    Raises TestTimeout naming `what` (plus on_timeout()'s text) otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            extra = ""
            if on_timeout:
                try:
                    extra = "\n" + on_timeout()
                except Exception as e:  # diagnostics must not hide the timeout
                    extra = "\n(diagnostics failed: %r)" % e
            raise TestTimeout("timed out after %ss waiting for %s%s" % (timeout, what, extra))
        time.sleep(interval)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tail(path, n=40):
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return "(no log %s)" % path
    return "--- last %d lines of %s ---\n%s" % (n, path, "\n".join(lines[-n:]))


def run(cmd, timeout=60, check=True, **kw):
    """subprocess.run with a timeout and captured text output; on failure the
    exception message carries the output."""
    r = subprocess.run([str(c) for c in cmd], capture_output=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise AssertionError(
            "command failed (%d): %s\nstdout: %s\nstderr: %s"
            % (r.returncode, " ".join(map(str, cmd)), _txt(r.stdout)[-3000:], _txt(r.stderr)[-3000:])
        )
    return r


def _txt(b):
    return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")


def snapshot_tree(root, exclude=()):
    """{relative path: (size, mtime_ns)} of every file and directory under
    root, skipping any path inside one of `exclude`."""
    root = Path(root)
    ex = [Path(e).resolve() for e in exclude]
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath).resolve()
        if any(d == e or e in d.parents for e in ex):
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            p = d / name
            if any(p == e for e in ex):
                continue
            try:
                st = p.lstat()
            except FileNotFoundError:
                continue
            out[str(p.relative_to(root.resolve()))] = (st.st_size if p.is_file() else -1, st.st_mtime_ns)
    return out


# ---- processes ------------------------------------------------------------


class Proc:
    """A child process in its own process group, output to a log file.
    Every Proc is registered so that fixtures can kill leftovers."""

    registry = []

    def __init__(self, name, cmd, log, env=None, cwd=None):
        self.name = name
        self.cmd = [str(c) for c in cmd]
        self.log = Path(log)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.log, "ab")
        fh.write(("=== %s: %s\n" % (time.strftime("%H:%M:%S"), " ".join(self.cmd))).encode())
        fh.flush()
        e = dict(os.environ)
        if env:
            e.update(env)
        self.p = subprocess.Popen(
            self.cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=e, cwd=cwd,
        )
        fh.close()
        Proc.registry.append(self)

    @property
    def pid(self):
        return self.p.pid

    def alive(self):
        return self.p.poll() is None

    def returncode(self):
        return self.p.poll()

    def signal_group(self, sig):
        try:
            os.killpg(self.p.pid, sig)
        except ProcessLookupError:
            pass

    def kill9(self):
        """SIGKILL to the whole group, then reap."""
        self.signal_group(signal.SIGKILL)
        try:
            self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def stop(self, timeout=15):
        """SIGTERM, wait up to timeout, then SIGKILL. Returns the exit code."""
        if self.alive():
            self.signal_group(signal.SIGTERM)
            try:
                self.p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
        self.signal_group(signal.SIGKILL)  # anything the program left in its group
        return self.p.poll()

    def wait(self, timeout):
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TestTimeout("%s (pid %d) still running after %ss\n%s"
                              % (self.name, self.pid, timeout, tail(self.log)))

    def text(self):
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, n=40):
        return tail(self.log, n)

    @classmethod
    def kill_all(cls):
        for pr in cls.registry:
            if pr.alive():
                pr.kill9()
            else:
                pr.signal_group(signal.SIGKILL)
        cls.registry.clear()


# ---- PKI ------------------------------------------------------------------


def _subj(cn):
    # openssl -subj: '/' and '+' and '=' inside a value are escaped with '\'.
    return "/CN=" + re.sub(r"([/+=\\])", r"\\\1", cn)


class Cert:
    def __init__(self, cn, crt, key):
        self.cn = cn
        self.crt = Path(crt)
        self.key = Path(key)

    def __repr__(self):
        return "Cert(%r)" % self.cn


class Pki:
    """A throwaway CA (EC P-256) and certificates signed by it, made with
    the openssl command line. cert(cn) makes a client certificate on first
    use; server is the broker's certificate for 127.0.0.1 / localhost."""

    def __init__(self, d):
        self.dir = Path(d)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca_key = self.dir / "ca.key"
        self.ca = self.dir / "ca.crt"
        self._certs = {}
        self._n = 0
        self._genkey(self.ca_key)
        run(["openssl", "req", "-x509", "-new", "-key", self.ca_key, "-sha256", "-days", "3650",
             "-subj", "/CN=cam2drive test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", self.ca])
        self.server = self._issue("localhost", "serverAuth",
                                  "subjectAltName=IP:127.0.0.1,DNS:localhost", "broker")

    def _genkey(self, path):
        run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", path])
        os.chmod(path, 0o600)

    def _issue(self, cn, eku, extra, stem):
        key = self.dir / (stem + ".key")
        csr = self.dir / (stem + ".csr")
        crt = self.dir / (stem + ".crt")
        ext = self.dir / (stem + ".ext")
        self._genkey(key)
        run(["openssl", "req", "-new", "-key", key, "-subj", _subj(cn), "-out", csr])
        ext.write_text("basicConstraints=critical,CA:FALSE\n"
                       "keyUsage=critical,digitalSignature\n"
                       "extendedKeyUsage=%s\n%s\n" % (eku, extra))
        run(["openssl", "x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key,
             "-CAcreateserial", "-days", "825", "-sha256", "-extfile", ext, "-out", crt])
        return Cert(cn, crt, key)

    def cert(self, cn):
        """Client certificate whose CN is cn (any string, even '../x')."""
        if cn not in self._certs:
            self._n += 1
            stem = re.sub(r"[^A-Za-z0-9_-]", "_", cn) + "-%d" % self._n
            self._certs[cn] = self._issue(cn, "clientAuth", "", stem)
        return self._certs[cn]


# ---- broker ---------------------------------------------------------------

# The ACL the tests' broker uses. A device (CN = username) may write its own
# seg/state/evt and read its own ack/cfg: exact topics rather than the
# documented `pattern readwrite c2d/v1/d/%u/#`, because mosquitto 2.0.11
# substitutes %u even when the CN contains '/', and a CN "rec-b/seg" then
# matches `c2d/v1/d/rec-b/seg/#` = rec-b's seg topic (tests/integration/
# test_04_acl.py shows both).
ACL_EXACT = """\
user c2d-controller
topic readwrite c2d/v1/d/#
topic readwrite c2d/v1/pair/#

pattern write c2d/v1/d/%u/seg
pattern read c2d/v1/d/%u/ack
pattern read c2d/v1/d/%u/cfg
pattern readwrite c2d/v1/d/%u/state
pattern write c2d/v1/d/%u/evt
pattern write c2d/v1/d/%u/csr
pattern read c2d/v1/d/%u/cert
"""

# The ACL as written in DESIGN.md and proto/README.md.
ACL_DOCUMENTED = """\
user c2d-controller
topic readwrite c2d/v1/d/#
topic readwrite c2d/v1/pair/#

pattern readwrite c2d/v1/d/%u/#
"""


class Broker:
    """A real mosquitto on 127.0.0.1:port with mutual TLS; the client
    certificate's CN is the MQTT username and the ACL keeps every device in
    its own namespace. restart() comes back on the same port."""

    def __init__(self, pki, d, acl=ACL_EXACT, port=None):
        self.pki = pki
        self.dir = Path(d)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.host = HOST
        self.log = self.dir / "mosquitto.log"
        self.acl = self.dir / "acl"
        self.acl.write_text(acl)
        self.conf = self.dir / "mosquitto.conf"
        lines = [
            "per_listener_settings false",
            "allow_anonymous false",
            "acl_file %s" % self.acl,
            "persistence false",
            "max_inflight_messages 10000",
            "max_queued_messages 10000",
            "max_queued_bytes 0",
            "set_tcp_nodelay true",
            "log_dest file %s" % self.log,
            "log_type all",
            "log_timestamp_format %H:%M:%S",
            "listener %d %s" % (self.port, HOST),
            "cafile %s" % pki.ca,
            "certfile %s" % pki.server.crt,
            "keyfile %s" % pki.server.key,
            "require_certificate true",
            "use_identity_as_username true",
        ]
        if os.geteuid() == 0:
            # mosquitto started as root drops to user "mosquitto", which
            # could not read our 0600 keys.
            lines.insert(0, "user root")
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc = None
        self.starts = 0

    def start(self, timeout=15):
        assert self.proc is None or not self.proc.alive(), "broker already running"
        # the port may linger in TIME_WAIT after a kill; mosquitto uses
        # SO_REUSEADDR, so retrying a few times is enough.
        for attempt in range(5):
            self.proc = Proc("mosquitto", ["mosquitto", "-c", self.conf], self.dir / "stdout.log")
            try:
                wait_for(lambda: port_open(self.port) or not self.proc.alive(), timeout,
                         "mosquitto on port %d" % self.port)
            except TestTimeout:
                self.proc.kill9()
                raise
            if self.proc.alive():
                self.starts += 1
                return self
            time.sleep(0.5)
        raise AssertionError("mosquitto did not start\n%s\n%s" % (tail(self.log), self.proc.tail()))

    def stop(self):
        if self.proc:
            self.proc.stop()

    def kill9(self):
        if self.proc:
            self.proc.kill9()

    def restart(self, down_s=1.0, hard=True):
        """Kill (SIGKILL if hard, else SIGTERM), stay down down_s, start again."""
        self.kill9() if hard else self.stop()
        time.sleep(down_s)
        return self.start()

    def client_args(self, cert):
        """mosquitto_pub/_sub arguments to connect as cert's identity."""
        return ["-h", HOST, "-p", str(self.port), "--cafile", str(self.pki.ca),
                "--cert", str(cert.crt), "--key", str(cert.key), "-V", "mqttv5"]


def start_ca_broker(ca_dir, ports, log, timeout=15):
    """mosquitto -c ca_dir/mosquitto.conf, as c2d-ca init wrote it, once all
    its ports (the device and pairing listeners) accept connections.
    Retried a few times: a port of the previous test may linger in
    TIME_WAIT. Returns the Proc; the caller kill9()s it."""
    ports = list(ports)
    for attempt in range(5):
        p = Proc("mosquitto", ["mosquitto", "-c", Path(ca_dir) / "mosquitto.conf"], log)
        wait_for(lambda: not p.alive() or all(port_open(x) for x in ports), timeout,
                 "mosquitto on ports %s" % ", ".join(str(x) for x in ports))
        if p.alive():
            return p
        time.sleep(0.5)
    raise AssertionError("mosquitto did not start\n%s" % p.tail())


# ---- MQTT test clients (paho) --------------------------------------------


def _paho():
    import paho.mqtt.client as mqtt  # Debian's python3-paho-mqtt (1.6)
    return mqtt


class MqttClient:
    """A paho MQTT v5 client over TLS with a certificate, collecting every
    message received on its subscriptions into a queue."""

    def __init__(self, broker, cert, client_id, subscribe=(), connect_timeout=10):
        mqtt = _paho()
        self.mqtt = mqtt
        self.broker = broker
        self.messages = queue.Queue()
        self.all = []
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._pending_subs = 0
        self.connect_rc = None
        self.subs = list(subscribe)
        c = mqtt.Client(client_id=client_id, protocol=mqtt.MQTTv5)
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(broker.pki.ca))
        ctx.load_cert_chain(str(cert.crt), str(cert.key))
        c.tls_set_context(ctx)
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        c.on_disconnect = self._on_disconnect
        c.reconnect_delay_set(min_delay=1, max_delay=2)
        self.c = c
        c.connect(HOST, broker.port, keepalive=30, clean_start=True)
        c.loop_start()
        if not self._connected.wait(connect_timeout):
            self.close()
            raise TestTimeout("MQTT connect as %s: rc=%s" % (cert.cn, self.connect_rc))
        if self.subs and not self._subscribed.wait(connect_timeout):
            self.close()
            raise TestTimeout("MQTT subscribe as %s" % cert.cn)

    def _on_connect(self, client, userdata, flags, rc, properties=None):
        self.connect_rc = rc
        if rc == 0:
            for t in self.subs:
                client.subscribe(t, qos=1)
            if not self.subs:
                self._subscribed.set()
            self._connected.set()

    def _on_subscribe(self, client, userdata, mid, granted, properties=None):
        self._subscribed.set()

    def _on_disconnect(self, client, userdata, rc, properties=None):
        self._connected.clear()

    def _on_message(self, client, userdata, msg):
        m = (msg.topic, bytes(msg.payload))
        self.all.append(m)
        self.messages.put(m)

    def publish(self, topic, payload, qos=1, timeout=10):
        info = self.c.publish(topic, payload, qos=qos)
        info.wait_for_publish(timeout)
        return info

    def get(self, timeout):
        """Next message (topic, payload) or None after timeout seconds."""
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            return None

    def drain(self, quiet=0.3):
        """Discards messages until none arrives for `quiet` seconds."""
        out = []
        while True:
            m = self.get(quiet)
            if m is None:
                return out
            out.append(m)

    def close(self):
        try:
            self.c.disconnect()
        except Exception:
            pass
        self.c.loop_stop()


# ---- wire protocol (proto/README.md), for tests that speak it directly ------


def chunk_frame(ch, start, offset, data, version=1, flags=0, length=None, crc=None):
    """A chunk frame: 32-byte big-endian header + payload. length/crc/version
    can be forced to wrong values to build bad inputs."""
    if length is None:
        length = len(data)
    if crc is None:
        crc = zlib.crc32(data) & 0xFFFFFFFF
    return struct.pack(">4sBBHqQII", b"C2DK", version, flags, ch, start, offset, length, crc) + data


def begin_msg(ch, start, data=None, size=None, sha256=None, dur=10_000_000, v=1):
    m = {"v": v, "t": "begin", "ch": ch, "start": start, "dur": dur,
         "size": len(data) if size is None else size,
         "sha256": hashlib.sha256(data).hexdigest() if sha256 is None else sha256}
    return json.dumps(m).encode()


def end_msg(ch, start, v=1):
    return json.dumps({"v": v, "t": "end", "ch": ch, "start": start}).encode()


def seg_topic(dev):
    return "c2d/v1/d/%s/seg" % dev


def ack_topic(dev):
    return "c2d/v1/d/%s/ack" % dev


# ---- media ----------------------------------------------------------------


def ffprobe_json(path, packets=True, timeout=120):
    cmd = ["ffprobe", "-v", "error", "-show_streams", "-of", "json"]
    if packets:
        cmd += ["-show_packets", "-show_data_hash", "SHA256"]
    r = subprocess.run(cmd + [str(path)], capture_output=True, timeout=timeout)
    return r.returncode, _txt(r.stderr).strip(), (json.loads(r.stdout) if r.stdout.strip() else {})


def probe_ok(path):
    """Asserts ffprobe reads path (all packets) without error."""
    rc, err, j = ffprobe_json(path)
    assert rc == 0 and not err, "ffprobe failed on %s (rc %d): %s" % (path, rc, err[:2000])
    assert j.get("streams"), "ffprobe found no streams in %s" % path
    assert j.get("packets"), "ffprobe found no packets in %s" % path
    return j


def media_duration(path):
    r = run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", path])
    return float(json.loads(r.stdout)["format"]["duration"])


class Packets:
    """Packets of a file, by codec type (one stream per type here)."""

    def __init__(self, path, j=None):
        self.path = Path(path)
        if j is None:
            j = probe_ok(path)
        self.codec = {}  # codec_type -> codec_name
        tb = {}
        idx_type = {}
        for s in j["streams"]:
            t = s.get("codec_type")
            if t in self.codec:
                raise AssertionError("%s has two %s streams" % (path, t))
            self.codec[t] = s.get("codec_name")
            idx_type[s["index"]] = t
            num, den = s["time_base"].split("/")
            tb[t] = Fraction(int(num), int(den))
        self.tb = tb
        self.by_type = {t: [] for t in self.codec}
        for p in j["packets"]:
            t = idx_type.get(p["stream_index"], p.get("codec_type"))
            ts = p.get("pts", p.get("dts"))
            self.by_type[t].append((p["data_hash"], None if ts is None else Fraction(ts) * tb[t],
                                    "K" in p.get("flags", "")))


def compare_packets(sources, segments, types=None, check_pts=True):
    """Asserts that the packets of the stored segments (in start order),
    taken together, are exactly the packets of the source file(s): the same
    codec types, per type the same data hashes in the same order, and (if
    check_pts) within every segment one constant timestamp offset from the
    source over all its streams (A/V sync kept, nothing retimed inside);
    with several source files, one offset per (segment, source file): a
    reader of a directory may rebase each file, but all streams alike.
    types: the codec types to compare (default: all of the source's)."""
    sources = [Packets(s) if not isinstance(s, Packets) else s for s in sources]
    segs = [Packets(s) if not isinstance(s, Packets) else s for s in segments]
    assert segs, "no segments"
    if types is None:
        types = sorted(sources[0].codec)
    src = {t: [] for t in types}
    src_file = {t: [] for t in types}
    for j, s in enumerate(sources):
        for t in types:
            assert t in s.codec, "source %s lacks %s" % (s.path, t)
            src[t] += s.by_type[t]
            src_file[t] += [j] * len(s.by_type[t])
    got = {t: [] for t in types}
    owner = {t: [] for t in types}
    for i, s in enumerate(segs):
        for t in types:
            assert t in s.codec, "segment %s has no %s stream (has %s)" % (s.path, t, sorted(s.codec))
            assert s.codec[t] == sources[0].codec[t], "segment %s: %s codec %s, source %s" % (
                s.path, t, s.codec[t], sources[0].codec[t])
            got[t] += s.by_type[t]
            owner[t] += [i] * len(s.by_type[t])
    for t in types:
        a = [h for h, _, _ in src[t]]
        b = [h for h, _, _ in got[t]]
        if a != b:
            n = next((k for k in range(min(len(a), len(b))) if a[k] != b[k]), min(len(a), len(b)))
            where = ("segment %s" % segs[owner[t][n]].path) if n < len(b) else "end of store"
            dup = len(b) - len(set(b))
            raise AssertionError(
                "%s packets differ: source %d, store %d; first difference at packet %d (%s); "
                "%d source packets missing from the store, %d stored packets not in the source, "
                "%d repeated hashes in the store (source has %d)"
                % (t, len(a), len(b), n, where, len(set(a) - set(b)), len(set(b) - set(a)), dup,
                   len(a) - len(set(a))))
    if not check_pts:
        return
    offs = {}  # (segment, source file) -> [offset]
    for t in types:
        for k in range(len(owner[t])):
            ts_src, ts_got = src[t][k][1], got[t][k][1]
            if ts_src is not None and ts_got is not None:
                offs.setdefault((owner[t][k], src_file[t][k]), []).append(ts_got - ts_src)
    for (i, j), o in sorted(offs.items()):
        tol = max(max(x.tb.values()) for x in [sources[j], segs[i]])
        assert max(o) - min(o) <= tol, (
            "segment %s: timestamps shifted unevenly against the source %s (offsets from %.6f "
            "to %.6f s): packets were retimed or streams desynchronised"
            % (segs[i].path, sources[j].path, float(min(o)), float(max(o))))


# ---- controller and agent ---------------------------------------------------


def _need(binary):
    if not binary.exists():
        raise AssertionError("%s is not built (C2D_BUILD_DIR=%s): run ninja -C %s"
                             % (binary, BUILD_DIR, BUILD_DIR))


class Controller:
    def __init__(self, d, broker, cert, **overrides):
        _need(CONTROLLER_BIN)
        self.dir = Path(d)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.dir / "data"
        self.log = self.dir / "controller.log"
        self.broker = broker
        cfg = {
            "data_dir": str(self.data_dir),
            "broker": {"host": HOST, "port": broker.port, "ca_file": str(broker.pki.ca),
                       "cert_file": str(cert.crt), "key_file": str(cert.key),
                       "keepalive_s": 5, "client_id": "c2d-controller"},
            "max_segment_bytes": 268435456,
            "max_channels": 64,
            "ledger_map_bytes": 1 << 30,
            # The transport tests run without subscriptions; quota tests
            # turn this off (tests/integration/test_22_quota.py).
            "open_mode": True,
        }
        cfg.update(overrides)
        self.cfg = cfg
        self.conf = self.dir / "controller.json"
        self.conf.write_text(json.dumps(cfg, indent=2))
        self.proc = None

    def start(self):
        assert self.proc is None or not self.proc.alive()
        self.proc = Proc("c2d-controller", [CONTROLLER_BIN, "run", "-c", self.conf], self.log)
        time.sleep(0.2)
        assert self.proc.alive(), "controller exited at start\n" + self.proc.tail()
        return self

    def kill9(self):
        self.proc.kill9()

    def stop(self):
        return self.proc.stop() if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.alive()

    def _cli(self, what):
        r = run([CONTROLLER_BIN, what, "-c", self.conf, "--json"], timeout=60)
        try:
            return json.loads(r.stdout)
        except ValueError:
            raise AssertionError("c2d-controller %s --json printed no JSON: %r" % (what, r.stdout[:500]))

    def segments(self):
        """`segments --json`'s list, sorted by (device, channel, start_us)."""
        segs = self._cli("segments")["segments"]
        return sorted(segs, key=lambda s: (s["device"], s["channel"], s["start_us"]))

    def usage(self):
        return self._cli("usage")

    def log_text(self):
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def partial_files(self):
        p = self.data_dir / "partial"
        return [f for f in p.rglob("*") if f.is_file()] if p.exists() else []

    def diag(self):
        return self.proc.tail(60) if self.proc else "(controller never started)"

    def http_port(self, timeout=15):
        """The API port, from the `http listening on ADDR:PORT` log line."""
        found = []

        def ready():
            m = re.search(r"http listening on \S+:(\d+)$", self.log_text(), re.M)
            if m:
                found.append(int(m.group(1)))
            return bool(found)

        wait_for(ready, timeout, "controller http listener", on_timeout=self.diag)
        return found[0]

    def init(self, email, password, check=True):
        """`c2d-controller init` with the password on stdin."""
        return run([CONTROLLER_BIN, "init", "-c", self.conf, "--email", email],
                   input=(password + "\n").encode(), check=check, timeout=60)


class Agent:
    def __init__(self, d, broker, cert, channels, device_id=None, **overrides):
        _need(AGENT_BIN)
        self.dir = Path(d)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state_dir = self.dir / "state"
        self.keep_dir = self.dir / "sent"
        self.log = self.dir / "agent.log"
        self.device_id = device_id or cert.cn
        cfg = {
            "device_id": self.device_id,
            "state_dir": str(self.state_dir),
            "broker": {"host": HOST, "port": broker.port, "ca_file": str(broker.pki.ca),
                       "cert_file": str(cert.crt), "key_file": str(cert.key), "keepalive_s": 5},
            "segment_seconds": 10,
            "chunk_bytes": 65536,
            "window_chunks": 8,
            "rate_limit_bps": 0,
            "spool_max_bytes": 1 << 30,
            "ack_timeout_s": 3,
            "keep_sent_dir": str(self.keep_dir),
            "channels": channels,
        }
        cfg.update(overrides)
        self.cfg = cfg
        self.conf = self.dir / "agent.json"
        self.conf.write_text(json.dumps(cfg, indent=2))
        self.proc = None
        self.runs = 0

    def start(self, exit_when_done=True, env=None):
        assert self.proc is None or not self.proc.alive()
        cmd = [AGENT_BIN, "run", "-c", self.conf]
        if exit_when_done:
            cmd.append("--exit-when-done")
        self.proc = Proc("c2d-agent", cmd, self.log, env=env)
        self.runs += 1
        return self

    def wait_done(self, timeout, controller=None):
        """Waits for --exit-when-done's exit; asserts exit code 0."""
        try:
            rc = self.proc.wait(timeout)
        except TestTimeout as e:
            extra = ("\n" + controller.diag()) if controller else ""
            raise TestTimeout(str(e) + extra)
        assert rc == 0, "c2d-agent exited %s\n%s" % (rc, self.proc.tail())

    def kill9(self):
        self.proc.kill9()

    def stop(self):
        return self.proc.stop() if self.proc else None

    def status(self):
        r = run([AGENT_BIN, "status", "-c", self.conf], timeout=30)
        return json.loads(r.stdout)

    def kept(self):
        """{(channel, start_us): path} of keep_sent_dir/{ch}/{start}.ts."""
        out = {}
        if self.keep_dir.exists():
            for f in self.keep_dir.glob("*/*.ts"):
                out[(int(f.parent.name), int(f.stem))] = f
        return out

    def spool_files(self):
        sp = self.state_dir / "spool"
        return [f for f in sp.rglob("*.ts")] if sp.exists() else []


def stored_paths(controller, segs, device=None, channel=None):
    """Absolute paths of stored segments (optionally of one camera), in
    start order."""
    return [controller.data_dir / s["path"] for s in segs
            if (device is None or s["device"] == device) and (channel is None or s["channel"] == channel)]


def check_store_consistent(controller, segs=None):
    """The books match the disk: every listed segment's file exists with the
    listed size and SHA-256, is listed once, lies inside data_dir/store; no
    unlisted file in store/; usage per camera = sum of its files; total =
    sum of all."""
    if segs is None:
        segs = controller.segments()
    store = (controller.data_dir / "store").resolve()
    keys = [(s["device"], s["channel"], s["start_us"]) for s in segs]
    assert len(keys) == len(set(keys)), "a segment is listed twice: %s" % sorted(
        k for k in keys if keys.count(k) > 1)
    paths = set()
    for s in segs:
        p = (controller.data_dir / s["path"]).resolve()
        assert store in p.parents, "segment path %s is outside store/" % s["path"]
        assert p.is_file(), "listed segment %s has no file" % s["path"]
        assert p.stat().st_size == s["size"], "%s: size %d listed, %d on disk" % (
            s["path"], s["size"], p.stat().st_size)
        assert sha256_file(p) == s["sha256"], "%s: sha256 differs from the ledger" % s["path"]
        paths.add(p)
    on_disk = {f.resolve() for f in store.rglob("*") if f.is_file()} if store.exists() else set()
    assert on_disk == paths, "files in store/ that the ledger does not list: %s; listed but missing: %s" % (
        sorted(map(str, on_disk - paths)), sorted(map(str, paths - on_disk)))
    u = controller.usage()
    cams = {}
    for s in segs:
        c = cams.setdefault((s["device"], s["channel"]), [0, 0])
        c[0] += s["size"]
        c[1] += 1
    got = {(c["device"], c["channel"]): [c["bytes"], c["segments"]] for c in u["cameras"]
           if c["bytes"] or c["segments"]}
    assert got == cams, "usage --json %s != stored files %s" % (got, cams)
    assert u["total_bytes"] == sum(s["size"] for s in segs), "total_bytes %s != %s" % (
        u["total_bytes"], sum(s["size"] for s in segs))


def file_channel(ch, source, **kw):
    """An agent channel reading a file or directory as fast as it can."""
    c = {"id": ch, "name": "cam%d" % ch, "source": str(source), "realtime": False, "loop": False}
    c.update(kw)
    return c


def check_upload(ctl, agent, dev, sources_by_ch, seg_seconds, types_by_ch=None, timeline=True):
    """Checks after an agent run with file sources (--exit-when-done) ended:
    the store holds every source packet exactly once (see test_01_upload.py).
    sources_by_ch: {ch: [source files in order]}."""
    types_by_ch = types_by_ch or {}
    segs = ctl.segments()
    assert segs, "nothing stored\n" + ctl.diag() + "\n" + agent.proc.tail()
    assert {s["device"] for s in segs} == {dev}
    assert {s["channel"] for s in segs} == set(sources_by_ch), "channels stored: %s" % sorted(
        {s["channel"] for s in segs})
    check_store_consistent(ctl, segs)
    # the agent's kept copies are exactly the stored files
    kept = agent.kept()
    stored = {(s["channel"], s["start_us"]): ctl.data_dir / s["path"] for s in segs}
    assert set(kept) == set(stored), "kept but not stored: %s; stored but not kept: %s" % (
        sorted(set(kept) - set(stored)), sorted(set(stored) - set(kept)))
    for k, p in stored.items():
        assert filecmp.cmp(kept[k], p, shallow=False), "stored %s differs from the agent's copy %s" % (
            p, kept[k])
    assert agent.spool_files() == [], "segments left in the spool: %s" % agent.spool_files()
    assert ctl.partial_files() == [], "partial uploads left: %s" % ctl.partial_files()
    for ch, sources in sources_by_ch.items():
        mine = [s for s in segs if s["channel"] == ch]
        compare_packets(sources, stored_paths(ctl, mine), types=types_by_ch.get(ch))
        # segments are cut about every segment_seconds (at keyframes, 2 s apart)
        for s in mine[:-1]:
            assert abs(s["duration_us"] / 1e6 - seg_seconds) <= 2.1, (
                "ch %d segment at %d lasts %.3f s, segment_seconds is %d"
                % (ch, s["start_us"], s["duration_us"] / 1e6, seg_seconds))
        total = sum(s["duration_us"] for s in mine) / 1e6
        expect = sum(media_duration(f) for f in sources)
        assert abs(total - expect) < 0.5, "ch %d: segments last %.3f s in all, source %.3f s" % (
            ch, total, expect)
        if timeline:
            for a, b in zip(mine, mine[1:]):
                gap = (b["start_us"] - a["start_us"] - a["duration_us"]) / 1e6
                assert abs(gap) < 0.1, (
                    "ch %d: segment at %d + %d us does not meet the next at %d (gap %.3f s): the "
                    "stored timeline has a hole or an overlap"
                    % (ch, a["start_us"], a["duration_us"], b["start_us"], gap))
    return segs


class SegSpy:
    """Watches every chunk frame the broker routes on c2d/v1/d/+/seg (as a
    second client with the controller's identity), to measure how much an
    interruption made the agent send again. The spy is disconnected while
    the broker is down, so across a broker restart it may undercount."""

    def __init__(self, broker, pki):
        self.broker = broker
        self.cert = pki.cert("c2d-controller")
        self.seen = []
        self.client = None
        self.reconnect()

    def reconnect(self):
        """A new connection (after a broker restart: paho 1.6 does not always
        come back by itself). What it saw before is kept."""
        if self.client:
            self.seen += self.client.all
            self.client.close()
        self.client = MqttClient(self.broker, self.cert, "c2d-spy", subscribe=["c2d/v1/d/+/seg"])

    def frames(self):
        """[(device, ch, start, offset, length)] of the chunk frames seen."""
        out = []
        for topic, payload in self.seen + list(self.client.all):
            if payload[:4] != b"C2DK" or len(payload) < 32:
                continue
            _, _, _, ch, start, offset, length, _ = struct.unpack(">4sBBHqQII", payload[:32])
            out.append((topic.split("/")[3], ch, start, offset, length))
        return out

    def resent(self):
        """(chunks seen more than once, bytes seen more than once) in all."""
        seen = {}
        chunks = nbytes = 0
        for dev, ch, start, offset, length in self.frames():
            key = (dev, ch, start)
            ranges = seen.setdefault(key, set())
            if (offset, length) in ranges:
                chunks += 1
                nbytes += length
            ranges.add((offset, length))
        return chunks, nbytes

    def close(self):
        self.client.close()


# ---- accounting: every segment an agent made ---------------------------------

# The agent's log lines (docs/components.md, c2d-agent "Logs"; agent/agent.c
# and agent/channel.c) that say what became of a segment it did not deliver.
RE_BACKUP_OFF = r"segment deleted ch=(\d+) start=(\d+) size=\d+: cloud backup is off"
RE_HELD = r"segment rejected ch=(\d+) start=(\d+) reason=(?:quota_full|no_disk)"
RE_SPOOL_FULL = (r"spool full after channel \d+'s segment: dropped (\d+) unsent segments "
                 r"\(\d+ bytes, starts (-?\d+)\.\.(-?\d+)\)")
RE_PARKED = r"segment parked ch=(\d+) start=(\d+)"
RE_BAD_FILE = r"segment dropped ch=(\d+) start=(\d+)"


def spool_keys(agent):
    """{(ch, start_us): path} of the segments in agent's spool."""
    return {(int(f.parent.name), int(f.stem)): f for f in agent.spool_files()}


def log_starts(text, pattern):
    return {(int(c), int(s)) for c, s in re.findall(pattern, text)}


def account(dev, agent, segs, policy, seg_s, strict=True, restarted=False, first_start_us=None,
            hole_s=None):
    """Accounts for every segment `agent` (device dev) made against segs, the
    controller's records of dev (`segments --json` items). Each is:
      stored   recorded, with the SHA-256 of the agent's copy (keep_sent_dir
               or spool), or dropped from the agent's full spool after it was
               sent (no copy left to compare: fsck --hashes checks the file);
      evicted  acknowledged (kept) and no longer recorded: an overwrite disk;
      backup_off  deleted by the agent, its channel's backup being off;
      dropped  dropped unsent from the agent's full spool (the agent's
               "spool full" lines: count and range of starts, no channel);
      refused  waiting in the spool on a channel held by a refusal
               (quota_full, no_disk);
      inflight waiting in the spool among the last made (the agent stopped).
    What the agent made is known from its files and log; a segment missing
    from all of them is a hole in a channel's timeline (starts more than
    hole_s apart, default 2 * seg_s + 1 for sources with a keyframe every
    2 s; or after first_start_us, the wall-clock time of the agent's first
    start) that no "spool full" line covers.

    agent: kept(), spool_files() and proc.text() (its log over all its runs).
    policy: its disk's policy ("overwrite", "stop") or None.
    restarted: the agent was killed meanwhile, so a segment may be both kept
      and in the spool (copied to keep_sent_dir after its ack, killed before
      the spool record went); such a stored one counts as stored.
    strict: AssertionError at the first problem (test_24); otherwise each
      problem is described in "problems" and counted in "lost" (holes by an
      estimate of the segments they held).
    Returns {"made", "stored", "evicted", "backup_off", "dropped",
    "dropped_stored", "refused", "inflight", "waiting", "lost", "problems",
    "span": {ch: (first start, last start)}}."""
    problems = []
    lost = [0]

    def problem(n, msg):
        if strict:
            raise AssertionError("%s: %s" % (dev, msg))
        problems.append("%s: %s" % (dev, msg))
        lost[0] += n

    text = agent.proc.text()
    kept = agent.kept()
    spool = spool_keys(agent)
    deleted = log_starts(text, RE_BACKUP_OFF)
    held = log_starts(text, RE_HELD)
    ranges = [(int(n), int(a), int(z)) for n, a, z in re.findall(RE_SPOOL_FULL, text)]
    bad_file = log_starts(text, RE_BAD_FILE)
    stored = {(s["channel"], s["start_us"]): s for s in segs}

    def in_drop(start):
        return any(a <= start <= z for _, a, z in ranges)

    both = set(kept) & set(spool)
    if both and not (restarted and both <= set(stored)):
        problem(len(both - set(stored)) or len(both),
                "in the spool and acknowledged: %s" % sorted(both)[:5])
    for k in sorted(deleted & set(kept)):
        problem(1, "ch %d start %d committed and deleted for backup off" % k)
    for k in sorted(deleted & set(stored)):
        problem(1, "ch %d start %d stored though the agent deleted it (backup off)" % k)
    dropped_stored = 0
    for k, s in sorted(stored.items()):
        src = kept.get(k) or spool.get(k)
        if not src:
            if in_drop(k[1]):
                dropped_stored += 1  # sent, then dropped from the full spool
            else:
                problem(1, "ch %d start %d is stored but the agent has no copy of it" % k)
        elif sha256_file(src) != s["sha256"]:
            problem(1, "ch %d start %d stored differs from the agent's copy %s" % (k[0], k[1], src))
    evicted = set(kept) - set(stored)
    if evicted and policy != "overwrite":
        problem(len(evicted), "acknowledged segments gone from a %s disk: %s"
                % (policy, sorted(evicted)[:5]))
        evicted = set()
    for k in sorted(bad_file - set(stored)):
        problem(1, "ch %d start %d dropped by the agent (its own file was damaged)" % k)

    made = set(kept) | set(spool) | deleted | set(stored)
    gap_us = (2 * seg_s + 1 if hole_s is None else hole_s) * 10**6
    holes = 0
    refused = inflight = 0
    span = {}
    for ch in sorted({c for c, _ in made}):
        starts = sorted(s for c, s in made if c == ch)
        span[ch] = (starts[0], starts[-1])
        pairs = list(zip(starts, starts[1:]))
        if first_start_us is not None and starts[0] - first_start_us > gap_us:
            pairs.insert(0, (first_start_us, starts[0]))
        for a, b in pairs:
            if b - a <= gap_us:
                continue
            n = max(1, round((b - a) / (seg_s * 1e6)) - 1)
            if any(lo < b and hi > a for _, lo, hi in ranges):
                holes += n
            else:
                problem(n, "ch %d: about %d segments missing between %d and %d (the agent "
                        "made them, nobody accounts for them)" % (ch, n, a, b))
        waiting = sorted(s for c, s in spool if c == ch and (c, s) not in stored)
        if waiting:
            # The first one waiting was refused (then its channel is held), or
            # was among the last made (in flight when the agent stopped).
            first = waiting[0]
            if (ch, first) in held:
                refused += len(waiting)
            elif first in starts[-4:]:
                inflight += len(waiting)
            else:
                problem(len(waiting), "ch %d start %d waits in the spool with no refusal"
                        % (ch, first))
    ndropped = sum(n for n, _, _ in ranges)
    if holes > ndropped - dropped_stored + len(ranges):
        problem(holes - (ndropped - dropped_stored),
                "holes hold about %d segments, the agent dropped %d unsent (%d of them stored)"
                % (holes, ndropped, dropped_stored))
    return {"made": len(made) + max(0, ndropped - dropped_stored), "stored": len(stored),
            "evicted": len(evicted), "backup_off": len(deleted),
            "dropped": max(0, ndropped - dropped_stored), "dropped_stored": dropped_stored,
            "refused": refused, "inflight": inflight,
            "waiting": len(set(spool) - set(stored)), "lost": lost[0], "problems": problems,
            "span": span}
