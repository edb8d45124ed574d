"""Generated recordings for the benchmarks and the fleet simulator: H.264
in MPEG-TS made by ffmpeg from a noisy test pattern, cached by parameters.

The noise (temporal, strength 20) keeps x264 from squeezing the picture
below the bitrate, and CBR with HRD filler keeps every second at it, so the
bytes per second are what a camera at that bitrate sends. A keyframe every
second lets segments cut cleanly at any whole number of seconds."""

import os
import subprocess

RATE = 25


def default_size(bitrate):
    """720p for a main stream (1 Mbit/s and more), 360p below: the noise
    filter's cost grows with the picture, and a low bitrate is a sub-stream."""
    return "1280x720" if bitrate >= 1_000_000 else "640x360"


def recording(cache_dir, seconds, bitrate, size=None, rate=RATE, log=None):
    """Path of a cached MPEG-TS file of `seconds` s of H.264 at `bitrate`
    bits/s, made once (atomically: a temporary file renamed). Raises
    RuntimeError when ffmpeg fails."""
    size = size or default_size(bitrate)
    os.makedirs(cache_dir, exist_ok=True)
    path = os.path.join(cache_dir, "src-%s-%db-%dfps-%ds.ts" % (size, bitrate, rate, seconds))
    if os.path.exists(path):
        return path
    if log:
        log("generating %s (%d s of %.2f Mbit/s H.264)" % (path, seconds, bitrate / 1e6))
    tmp = "%s.tmp%d" % (path, os.getpid())
    argv = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", "testsrc2=size=%s:rate=%d" % (size, rate),
            "-t", str(seconds), "-vf", "noise=alls=20:allf=t",
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
            "-b:v", str(bitrate), "-minrate", str(bitrate), "-maxrate", str(bitrate),
            # a second's worth of buffer, at most 2 Mbit: CBR within the second
            "-bufsize", str(min(bitrate, 2_000_000)),
            "-x264-params", "nal-hrd=cbr", "-g", str(rate), "-f", "mpegts", tmp]
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
    if r.returncode != 0:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise RuntimeError("ffmpeg failed with status %d: %s"
                           % (r.returncode, r.stderr.decode(errors="replace").strip()[-500:]))
    os.rename(tmp, path)
    return path
