# shellcheck shell=bash
# Debian 12 packages that building, testing and demonstrating cam2drive need.
# Sourced by tools/check and tools/demo: `c2d_install_deps` installs whatever
# is missing (as root, or through sudo), and nothing when all is there.

C2D_DEPS=(
    # build
    meson ninja-build pkg-config gcc clang libclang-rt-14-dev clang-format
    libmbedtls-dev libmosquitto-dev libcjson-dev liblmdb-dev
    libavformat-dev libavcodec-dev libavutil-dev zlib1g-dev libmicrohttpd-dev
    libssl-dev  # controller hashes uploads with libcrypto (SHA extensions)
    # integration tests and demo: real broker, PKI, sample media
    mosquitto mosquitto-clients openssl ffmpeg
    python3 python3-pytest python3-paho-mqtt
    # RTSP test server (tests/integration/rtsp_server.py): GstRtspServer via
    # gi; filesrc (core), tsdemux and h264parse/h265parse (bad), qtdemux,
    # matroskademux, aacparse and the rtp*pay payloaders (good).
    python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-rtsp-server-1.0
    gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
)

# Prints the packages of C2D_DEPS that are not installed, one per line.
c2d_missing_deps()
{
    local p st
    for p in "${C2D_DEPS[@]}"; do
        st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
        [ "$st" = installed ] || echo "$p"
    done
}

c2d_install_deps()
{
    local missing sudo=()
    mapfile -t missing < <(c2d_missing_deps)
    [ "${#missing[@]}" -eq 0 ] && return 0
    echo "installing missing Debian packages: ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null; then
            sudo=(sudo)
        else
            echo "error: not root and no sudo; install them first" >&2
            return 1
        fi
    fi
    # Installing mosquitto starts Debian's own broker service on port 1883
    # where systemd runs; nothing here uses it (tests pick free ports).
    local log
    log=$(mktemp)
    if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >"$log" 2>&1 ||
        ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
            --no-install-recommends "${missing[@]}" >>"$log" 2>&1; then
        tail -n 30 "$log" >&2
        rm -f "$log"
        echo "error: apt-get failed" >&2
        return 1
    fi
    rm -f "$log"
}
