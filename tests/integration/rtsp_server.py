#!/usr/bin/python3
"""A small RTSP server for tests: serves one recording like a camera does.

    /usr/bin/python3 rtsp_server.py FILE [--port N] [--path /stream]

Prints "URL rtsp://127.0.0.1:PORT/stream" once it accepts connections, then
serves until SIGTERM/SIGINT. Each client gets its own pipeline that plays
FILE in real time (H.264 or H.265 video; AAC or G.711 mu-law audio; MPEG-TS,
MP4 or Matroska); the stream ends (EOS) at the end of the file.

Needs python3-gi, gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-good
(qtdemux, matroskademux, aacparse, rtp payloaders) and -bad (tsdemux,
h264parse, h265parse).
"""

import argparse
import json
import signal
import subprocess
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

DEMUX = {"mpegts": "tsdemux", "mov,mp4,m4a,3gp,3g2,mj2": "qtdemux", "matroska,webm": "matroskademux"}
VIDEO = {"h264": "h264parse ! rtph264pay config-interval=-1",
         "hevc": "h265parse ! rtph265pay config-interval=1"}
AUDIO = {"aac": "aacparse ! rtpmp4gpay", "pcm_mulaw": "rtppcmupay"}


def probe(path):
    r = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", path],
                       capture_output=True, check=True, timeout=60)
    return json.loads(r.stdout)


def launch_line(path):
    info = probe(path)
    fmt = info["format"]["format_name"]
    demux = DEMUX.get(fmt)
    if not demux:
        sys.exit("rtsp_server.py: unsupported container %s" % fmt)
    parts = []
    src = "filesrc location=\"%s\"" % path.replace('"', '\\"')
    parts.append("%s ! %s name=d" % (src, demux))
    n = 0
    for s in info["streams"]:
        t, c = s.get("codec_type"), s.get("codec_name")
        if t == "video" and c in VIDEO:
            parts.append("d. ! queue ! %s name=pay%d pt=%d" % (VIDEO[c], n, 96 + n))
            n += 1
        elif t == "audio" and c in AUDIO:
            pt = 0 if c == "pcm_mulaw" else 96 + n
            parts.append("d. ! queue ! %s name=pay%d pt=%d" % (AUDIO[c], n, pt))
            n += 1
    if n == 0:
        sys.exit("rtsp_server.py: no stream of %s can be served" % path)
    return "( " + " ".join(parts) + " )"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--port", type=int, default=0, help="0 = any free port")
    ap.add_argument("--path", default="/stream")
    args = ap.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(args.file))
    factory.set_shared(False)
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        sys.exit("rtsp_server.py: cannot listen on 127.0.0.1:%d" % args.port)

    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print("URL rtsp://127.0.0.1:%d%s" % (server.get_bound_port(), args.path), flush=True)
    loop.run()


if __name__ == "__main__":
    main()
