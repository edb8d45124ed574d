"""00: the test fixtures themselves work (no cam2drive program needed):
PKI, the mTLS broker with its ACL, sample media, the RTSP server, and the
packet comparison used by the upload tests."""

import json
import os
import stat
import subprocess

import pytest

from c2dtest import (
    MqttClient, compare_packets, media_duration, probe_ok, run,
)


def test_pki(pki):
    c = pki.cert("rec-a")
    out = run(["openssl", "x509", "-in", c.crt, "-noout", "-subject"]).stdout.decode()
    assert "CN = rec-a" in out
    run(["openssl", "verify", "-CAfile", pki.ca, c.crt])
    san = run(["openssl", "x509", "-in", pki.server.crt, "-noout", "-ext", "subjectAltName"]).stdout.decode()
    assert "IP Address:127.0.0.1" in san and "DNS:localhost" in san
    for key in (pki.ca_key, c.key, pki.server.key):
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    odd = pki.cert("a/..")
    out = run(["openssl", "x509", "-in", odd.crt, "-noout", "-subject"]).stdout.decode()
    assert "CN = a/.." in out


def test_broker_pubsub_with_device_certs(broker, pki):
    ctl = MqttClient(broker, pki.cert("c2d-controller"), "spy", subscribe=["c2d/v1/d/#"])
    a = MqttClient(broker, pki.cert("rec-a"), "rec-a", subscribe=["c2d/v1/d/rec-a/ack"])
    try:
        # device -> controller with the real mosquitto_pub
        run(["mosquitto_pub"] + broker.client_args(pki.cert("rec-a"))
            + ["-q", "1", "-t", "c2d/v1/d/rec-a/seg", "-m", "hello"])
        assert ctl.get(5) == ("c2d/v1/d/rec-a/seg", b"hello")
        # controller -> device
        ctl.publish("c2d/v1/d/rec-a/ack", b"ack")
        assert a.get(5) == ("c2d/v1/d/rec-a/ack", b"ack")
    finally:
        a.close()
        ctl.close()


def test_broker_refuses_no_cert_and_foreign_ca(broker, pki, tmp_path):
    # no client certificate: the TLS handshake fails
    r = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "--cafile",
                        str(pki.ca), "-V", "mqttv5", "-t", "c2d/v1/d/x/seg", "-m", "x"],
                       capture_output=True, timeout=20)
    assert r.returncode != 0


def test_broker_restart_same_port(broker, pki):
    port = broker.port
    broker.restart(down_s=0.2)
    assert broker.port == port and broker.proc.alive()
    run(["mosquitto_pub"] + broker.client_args(pki.cert("rec-a"))
        + ["-q", "1", "-t", "c2d/v1/d/rec-a/seg", "-m", "again"])


def test_media(media):
    for path, types in [(media.h264_aac, {"video": "h264", "audio": "aac"}),
                        (media.h265, {"video": "hevc"}),
                        (media.h264_g711, {"video": "h264", "audio": "pcm_mulaw"}),
                        (media.h264_short, {"video": "h264", "audio": "aac"})]:
        j = probe_ok(path)
        assert {s["codec_type"]: s["codec_name"] for s in j["streams"]} == types, path
    assert abs(media_duration(media.h264_aac) - 120) < 1
    assert abs(media_duration(media.h265) - 120) < 1
    files = media.dir_files()
    assert [f.name for f in files] == sorted(f.name for f in files) and len(files) == 3
    total = sum(media_duration(f) for f in files)
    assert abs(total - 30) < 1, total


def test_packet_comparison(media, tmp_path):
    """Cut the source like the agent would (ffmpeg's segment muxer, copy):
    the comparison accepts it, and notices a missing or repeated segment."""
    out = tmp_path / "segs"
    out.mkdir()
    run(["ffmpeg", "-nostdin", "-v", "error", "-i", media.h264_aac, "-map", "0", "-c", "copy", "-f",
         "segment", "-segment_time", "10", "-segment_format", "mpegts", out / "%03d.ts"], timeout=120)
    segs = sorted(out.glob("*.ts"))
    assert len(segs) >= 11
    compare_packets([media.h264_aac], segs)
    with pytest.raises(AssertionError, match="packets differ"):
        compare_packets([media.h264_aac], segs[:5] + segs[6:])
    with pytest.raises(AssertionError, match="packets differ"):
        compare_packets([media.h264_aac], segs[:6] + segs[5:])
    # the directory source: the store of a directory equals its files in order
    compare_packets(media.dir_files(), media.dir_files())


def test_rtsp_server(media, rtsp_server):
    url, proc = rtsp_server(media.h264_aac)
    r = subprocess.run(["ffprobe", "-v", "error", "-rtsp_transport", "tcp", "-read_intervals", "%+2",
                        "-show_streams", "-of", "json", url], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    types = sorted(s["codec_name"] for s in json.loads(r.stdout)["streams"])
    assert types == ["aac", "h264"]
    assert proc.alive()
