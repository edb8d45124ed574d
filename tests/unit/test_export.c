/* Unit tests for controller/export.c: MPEG-TS segments made with the ffmpeg
 * CLI are exported to one MP4; ffprobe -count_packets on the MP4 must give,
 * per stream type, the sum over the segments. Covers continuous
 * timestamps (segments cut from one recording), timestamps that restart
 * at every segment (shifted), a stream MP4 cannot carry (dropped and
 * named), the temp-file variant and errors. */
#include "check.h"
#include "controller/export.h"

#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256];

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    if (rc != 0)
        fprintf(stderr, "command failed (%d): %s\n", rc, cmd);
    return rc;
}

/* Packets per type of a file: {video, audio}; -1 if ffprobe fails.
 * ffprobe lists an MPEG-TS file's streams twice (in its program and on
 * their own): each index counts once. */
static void count_packets(const char *path, long out[2])
{
    char cmd[1024];
    out[0] = out[1] = -1;
    snprintf(
        cmd, sizeof(cmd),
        "ffprobe -v error -count_packets -show_entries stream=index,codec_type,nb_read_packets "
        "-of csv=p=0 '%s'",
        path);
    FILE *p = popen(cmd, "r");
    if (!p)
        return;
    char line[256];
    bool seen[64] = {false};
    out[0] = out[1] = 0;
    while (fgets(line, sizeof(line), p)) {
        char type[32];
        long n;
        int index;
        if (sscanf(line, "%d,%31[^,],%ld", &index, type, &n) != 3 || index < 0 || index >= 64 ||
            seen[index])
            continue;
        seen[index] = true;
        if (strcmp(type, "video") == 0)
            out[0] += n;
        else if (strcmp(type, "audio") == 0)
            out[1] += n;
    }
    if (pclose(p) != 0)
        out[0] = out[1] = -1;
}

/* Makes a 30 s H.264 + AAC recording cut into 3 segments of 10 s:
 * dir/<name>0.ts ... (reset: each segment's timestamps start at 0). */
static int make_segments(const char *name, int reset)
{
    if (sh("ffmpeg -nostdin -loglevel error -y -f lavfi -i testsrc2=size=320x240:rate=25 "
           "-f lavfi -i sine=frequency=440:sample_rate=48000 -t 30 -c:v libx264 -preset "
           "ultrafast -g 50 -keyint_min 50 -sc_threshold 0 -pix_fmt yuv420p -c:a aac -ac 1 "
           "-f mpegts '%s/%s-whole.ts'",
           dir, name) != 0)
        return -1;
    return sh("ffmpeg -nostdin -loglevel error -y -i '%s/%s-whole.ts' -map 0 -c copy -f segment "
              "-segment_time 10 -segment_format mpegts -reset_timestamps %d '%s/%s%%d.ts'",
              dir, name, reset, dir, name);
}

static void check_export(const char *name, int nseg)
{
    char seg[8][300], out[300];
    const char *paths[8];
    long want[2] = {0, 0};
    for (int i = 0; i < nseg; i++) {
        snprintf(seg[i], sizeof(seg[i]), "%s/%s%d.ts", dir, name, i);
        paths[i] = seg[i];
        long c[2];
        count_packets(seg[i], c);
        CHECK(c[0] > 0 && c[1] > 0);
        want[0] += c[0];
        want[1] += c[1];
    }
    snprintf(out, sizeof(out), "%s/%s.mp4", dir, name);
    ctl_export_info info;
    CHECK(ctl_export_mp4(paths, (size_t)nseg, out, &info) == 0);
    CHECK(info.streams == 2 && info.dropped == 0 && info.packets_dropped == 0);
    CHECK(info.packets == (uint64_t)(want[0] + want[1]));
    long got[2];
    count_packets(out, got);
    if (got[0] != want[0] || got[1] != want[1])
        fprintf(stderr, "%s: mp4 has %ld/%ld packets, segments %ld/%ld\n", name, got[0], got[1],
                want[0], want[1]);
    CHECK(got[0] == want[0] && got[1] == want[1]);
    /* Plays through: the whole duration is there (30 s, within a frame
     * or two), and the moov atom comes first (faststart). */
    char cmd[600];
    snprintf(cmd, sizeof(cmd),
             "ffprobe -v error -select_streams v:0 -show_entries stream=duration -of csv=p=0 "
             "'%s' | "
             "awk '{exit !($1 > 29.5 && $1 < 30.5)}'",
             out);
    CHECK(system(cmd) == 0);
    FILE *f = fopen(out, "rb");
    unsigned char hdr[64];
    size_t n = f ? fread(hdr, 1, sizeof(hdr), f) : 0;
    if (f)
        fclose(f);
    /* ftyp first, then (faststart) moov before mdat. */
    CHECK(n >= 16 && memcmp(hdr + 4, "ftyp", 4) == 0);
    if (n >= 16) {
        size_t ftyp =
            ((size_t)hdr[0] << 24) | ((size_t)hdr[1] << 16) | ((size_t)hdr[2] << 8) | hdr[3];
        CHECK(ftyp + 8 <= n && memcmp(hdr + ftyp + 4, "moov", 4) == 0);
    }
}

static void test_dropped(void)
{
    /* Matroska with H.264 + G.711: MP4 (FFmpeg 5.1) takes no pcm_mulaw. */
    char in[300], out[300];
    snprintf(in, sizeof(in), "%s/g711.mkv", dir);
    snprintf(out, sizeof(out), "%s/g711.mp4", dir);
    CHECK(sh("ffmpeg -nostdin -loglevel error -y -f lavfi -i testsrc=size=320x240:rate=25 "
             "-f lavfi -i sine=frequency=300:sample_rate=8000 -t 4 -c:v libx264 -preset "
             "ultrafast -pix_fmt yuv420p -c:a pcm_mulaw -f matroska '%s'",
             in) == 0);
    const char *paths[] = {in};
    ctl_export_info info;
    CHECK(ctl_export_mp4(paths, 1, out, &info) == 0);
    CHECK(info.streams == 1 && info.dropped == 1 && info.packets_dropped > 0);
    CHECK(strcmp(info.dropped_desc, "1:pcm_mulaw") == 0);
    long in_c[2], got[2];
    count_packets(in, in_c);
    count_packets(out, got);
    CHECK(got[0] == in_c[0] && got[1] == 0);
}

static void test_tmp_and_errors(void)
{
    char seg0[300], tmp[300], out[300];
    snprintf(seg0, sizeof(seg0), "%s/cont0.ts", dir);
    snprintf(tmp, sizeof(tmp), "%s/tmp/sub", dir);
    snprintf(out, sizeof(out), "%s/x.mp4", dir);
    const char *paths[] = {seg0};
    int fd = -1;
    uint64_t size = 0;
    ctl_export_info info;
    CHECK(ctl_export_mp4_tmp(tmp, paths, 1, &info, &fd, &size) == 0);
    CHECK(fd >= 0 && size > 1000);
    if (fd >= 0) {
        char hdr[8];
        CHECK(read(fd, hdr, 8) == 8 && memcmp(hdr + 4, "ftyp", 4) == 0);
        close(fd);
    }
    /* Nothing left in the temp dir. */
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "test -z \"$(ls -A '%s')\"", tmp);
    CHECK(system(cmd) == 0);

    CHECK(ctl_export_mp4(paths, 0, out, &info) == -EINVAL);
    const char *missing[] = {seg0, "/nonexistent/segment.ts"};
    CHECK(ctl_export_mp4(missing, 2, out, &info) == -ENOENT);
    fd = -1;
    CHECK(ctl_export_mp4_tmp(tmp, missing, 2, &info, &fd, &size) == -ENOENT && fd == -1);
    CHECK(system(cmd) == 0);
    char junk[300];
    snprintf(junk, sizeof(junk), "%s/junk.ts", dir);
    FILE *f = fopen(junk, "wb");
    if (f) {
        for (int i = 0; i < 4096; i++)
            fputc(i * 7 & 0xff, f);
        fclose(f);
    }
    const char *bad[] = {junk};
    CHECK(ctl_export_mp4(bad, 1, out, &info) == -EBADMSG);
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(p);
}

int main(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(dir, sizeof(dir), "%s/test_export.XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    if (make_segments("cont", 0) != 0 || make_segments("reset", 1) != 0) {
        fprintf(stderr, "cannot make test clips with ffmpeg\n");
        nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
        return 1;
    }
    check_export("cont", 3);
    check_export("reset", 3);
    test_dropped();
    test_tmp_and_errors();
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return check_result();
}
