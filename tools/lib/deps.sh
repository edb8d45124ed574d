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

# tools/cross-build: what building the agent for another CPU needs. $1 is the
# Debian architecture (arm64, armhf), $2 the GNU triplet. The libraries are
# multiarch packages (same version as the amd64 ones: apt upgrades those to
# match); pkg-config:ARCH provides TRIPLET-pkg-config. The controller's
# libraries (libmicrohttpd) are not needed: the cross build is agent-only.
c2d_cross_deps()
{
    local a=$1 t=$2 p
    echo "gcc-$t"
    echo qemu-user
    echo file
    for p in pkg-config libavformat-dev libavcodec-dev libavutil-dev libmosquitto-dev \
        libcjson-dev liblmdb-dev libmbedtls-dev zlib1g-dev libssl-dev; do
        echo "$p:$a"
    done
}

# Installs what c2d_cross_deps lists and is missing: adds the architecture
# to dpkg, updates the indexes, and first simulates the installation so that
# nothing already installed is removed (a multiarch conflict is an error
# that names the packages apt would remove; nothing is installed then). An
# architecture this function added is removed again if its indexes cannot
# be fetched, so a half-synced mirror does not break apt-get update for
# everything else.
c2d_install_cross_deps()
{
    local a=$1 t=$2 p st missing=() sudo=() added=0 log removals
    while read -r p; do
        st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
        [ "$st" = installed ] || missing+=("$p")
    done < <(c2d_cross_deps "$a" "$t")
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
    local apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q
        -o DPkg::Lock::Timeout=600)
    if ! dpkg --print-foreign-architectures | grep -qx "$a"; then
        "${sudo[@]}" dpkg --add-architecture "$a" || return 1
        added=1
    fi
    log=$(mktemp)
    if ! "${apt[@]}" update >"$log" 2>&1 || grep -q '^E: ' "$log"; then
        tail -n 20 "$log" >&2
        rm -f "$log"
        if [ "$added" = 1 ]; then
            echo "removing architecture $a again" >&2
            "${sudo[@]}" dpkg --remove-architecture "$a"
            "${apt[@]}" update >/dev/null 2>&1
        fi
        echo "error: apt-get update failed" >&2
        return 1
    fi
    if ! "${apt[@]}" -s install --no-install-recommends "${missing[@]}" >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        rm -f "$log"
        echo "error: apt-get cannot install: ${missing[*]}" >&2
        return 1
    fi
    removals=$(sed -n 's/^Remv \([^ ]*\).*/\1/p' "$log" | tr '\n' ' ')
    if [ -n "$removals" ]; then
        rm -f "$log"
        echo "error: installing ${missing[*]} would remove: $removals" >&2
        return 1
    fi
    grep -E '^[0-9]+ upgraded' "$log" || true
    if ! "${apt[@]}" install -y --no-install-recommends "${missing[@]}" >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        rm -f "$log"
        echo "error: apt-get install failed" >&2
        return 1
    fi
    rm -f "$log"
}
