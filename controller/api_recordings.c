/* Getting the video back (issue 4): a channel's recordings in a time
 * range with their gaps, one segment, an HLS playlist, an MP4 export and
 * short-lived playback tokens for players that cannot send a bearer
 * header. docs/api-recordings.md describes the endpoints.
 *
 * A channel's recordings are the ledger's segments of (device, number):
 * device is the device_id of the channel's recorder or one of the ids it
 * held before an unpairing (the revoked database names their recorder),
 * merged in start order by ctl_rec_query_devices. A segment is named by
 * its start time alone; a start time held by two of the ids serves the
 * current one's. Segments are read in the request's own directory
 * transaction (same LMDB environment), never through the committer's
 * ledger handle. Every segment served goes through ctl_rec_query, which
 * applies the retention cutoff (each device id's own).
 *
 * Audit: each view (a playlist with segments), download (a segment with a
 * bearer token) and export is an audit note on the channel, by the user
 * (for a playback token, the user who asked for it). Segments fetched with
 * a playback token are covered by its playlist's "view". */
#include "controller/api_int.h"

#include "common/c2d_time.h"

#include "common/c2d_fs.h"
#include "controller/export.h"
#include "controller/quota.h"
#include "controller/revoke.h"
#include "controller/token.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HOUR_US (3600 * INT64_C(1000000))
/* A list without from/to covers the last day; a list covers at most a
 * month (a page holds at most REC_PAGE_MAX segments anyway). */
#define REC_DEFAULT_US (24 * HOUR_US)
#define REC_LIST_MAX_US (31 * 24 * HOUR_US)
#define REC_PAGE_MAX 1000
/* A playlist covers at most a day: 8640 segments of 10 s, ~0.5 MB. */
#define PLAYLIST_MAX_US (24 * HOUR_US)
#define PLAYLIST_SEGMENTS_MAX 20000
/* An export is remuxed on the request's thread: at most 6 h, which is
 * about a GB at typical camera rates. */
#define EXPORT_MAX_US (6 * HOUR_US)
#define EXPORT_SEGMENTS_MAX 4320
/* Playback tokens live an hour; a user holds at most this many (older
 * ones are dropped when a new one is made). */
#define PLAYBACK_TTL_US HOUR_US
#define PLAYBACK_PER_USER_MAX 32
/* Gaps listed per page at most (a page has at most REC_PAGE_MAX + 1). */
#define GAPS_MAX (REC_PAGE_MAX + 1)

/* The camera behind a channel. */
typedef struct {
    uint64_t channel_id, tenant;
    /* The recorder's device ids: its device_id first (if it has one), then
     * the ids revoked from it, most recent first; none: no recordings. */
    size_t ndev, ncur; /* ncur: 1 if dev[0] is the current id */
    char dev[CTL_REC_DEVICES_MAX][C2D_DEVICE_ID_MAX + 1];
    int64_t revoked_at[CTL_REC_DEVICES_MAX]; /* of the earlier ids */
    uint16_t number;
} cam;

/* Adds an earlier id, kept in revocation order (most recent first); when
 * the table is full the oldest revocation gives way. */
static int add_old_id(void *ud, const char *device, int64_t at_us)
{
    cam *c = ud;
    size_t first = c->ncur, i = c->ndev;
    if (i == CTL_REC_DEVICES_MAX) {
        if (at_us <= c->revoked_at[i - 1])
            return 0;
        i--;
    } else {
        c->ndev++;
    }
    for (; i > first && c->revoked_at[i - 1] < at_us; i--) {
        memcpy(c->dev[i], c->dev[i - 1], sizeof(c->dev[i]));
        c->revoked_at[i] = c->revoked_at[i - 1];
    }
    snprintf(c->dev[i], sizeof(c->dev[i]), "%s", device);
    c->revoked_at[i] = at_us;
    return 0;
}

/* Reads channel id of tenant and its recorder's device: 0 or -ENOENT. */
static int cam_load(ctl_dir_txn *t, uint64_t tenant, uint64_t id, cam *c)
{
    memset(c, 0, sizeof(*c));
    ctl_dir_obj o = {0}, r = {0};
    int rc = ctl_dir_get_in_tenant(t, tenant, CTL_KIND_CHANNEL, id, &o);
    if (rc != 0)
        return rc;
    cJSON *j = cJSON_Parse(o.json), *rj = NULL;
    ctl_dir_obj_clear(&o);
    if (!j)
        return -EIO;
    int64_t number = api_jint(j, "number");
    c->channel_id = id;
    c->tenant = tenant;
    c->number = number >= 0 && number <= UINT16_MAX ? (uint16_t)number : 0;
    uint64_t rid = (uint64_t)api_jint(j, "recorder_id");
    rc = rid ? ctl_dir_get_in_tenant(t, tenant, CTL_KIND_RECORDER, rid, &r) : -ENOENT;
    if (rc == 0 && (rj = cJSON_Parse(r.json))) {
        const char *dev = api_jstr(rj, "device_id");
        if (dev && c2d_device_id_valid(dev)) {
            snprintf(c->dev[0], sizeof(c->dev[0]), "%s", dev);
            c->ndev = c->ncur = 1;
        }
        /* Without the revocation database (an API without a daemon) there
         * are no earlier ids. */
        rc = ctl_revoke_ids_of(t, rid, add_old_id, c);
        rc = rc == -ENXIO ? 0 : rc;
    }
    rc = rc == -ENOENT ? 0 : rc; /* a channel without recorder: no recordings */
    cJSON_Delete(rj);
    ctl_dir_obj_clear(&r);
    cJSON_Delete(j);
    return rc;
}

static int unavailable(api_ctx *x)
{
    return api_fail(x, 503, "recordings_unavailable", "this controller serves no recordings");
}

/* The {id} channel of the caller's tenant: 0, 1 answered, or -ENOENT. */
static int caller_cam(api_ctx *x, cam *c)
{
    if (!x->api->ledger)
        return unavailable(x);
    uint64_t id;
    int rc = api_path_id(x, "id", &id);
    return rc ? rc : cam_load(x->t, x->c.tenant, id, c);
}

/* ?from=&to=: [now - default, now) when both are absent, a default-long
 * range from "from", or ending at "to"; 0, or 1 with a 422 answered (bad
 * time, longer than max_us). */
static int time_range(api_ctx *x, int64_t max_us, int64_t *from, int64_t *to)
{
    int rc = api_query_range(x, from, to);
    if (rc != 0)
        return rc;
    bool has_from = ctl_http_req_query(x->req, "from"), has_to = ctl_http_req_query(x->req, "to");
    int64_t dflt = REC_DEFAULT_US < max_us ? REC_DEFAULT_US : max_us;
    if (!has_to)
        *to = has_from ? *from + dflt : ctl_dir_txn_now(x->t);
    if (!has_from)
        *from = *to > dflt ? *to - dflt : 0;
    if (*to - *from > max_us)
        return api_fail(x, 422, "range_too_long", "the range may cover at most %" PRId64 " h",
                        max_us / HOUR_US);
    return 0;
}

/* Retention: the camera's virtual disk says from when its segments may be
 * served (quota.h), read in the request's own transaction. */
typedef struct {
    ctl_ledger *l;
    MDB_txn *txn;
} cutoff_ctx;

static int64_t disk_cutoff(void *ud, const char *device, uint16_t ch)
{
    const cutoff_ctx *c = ud;
    return ctl_quota_cutoff(c->l, c->txn, device, ch, c2d_now_us());
}

/* The segments of c's device ids [first, first + n) in [from, to) after
 * after_us, at most max, merged. */
static int devs_query(ctl_api *a, ctl_dir_txn *t, const cam *c, size_t first, size_t n,
                      int64_t from, int64_t to, int64_t after_us, size_t max, ctl_rec_list *out)
{
    memset(out, 0, sizeof(*out));
    if (n == 0)
        return 0;
    const char *devs[CTL_REC_DEVICES_MAX];
    for (size_t i = 0; i < n; i++)
        devs[i] = c->dev[first + i];
    ctl_rec_range r = {.channel = c->number,
                       .from_us = from,
                       .to_us = to,
                       .after_us = after_us,
                       .max = max,
                       .cutoff = a->cutoff,
                       .cutoff_ud = a->cutoff_ud};
    cutoff_ctx cc = {a->ledger, ctl_dir_txn_mdb(t)};
    if (!r.cutoff) {
        r.cutoff = disk_cutoff;
        r.cutoff_ud = &cc;
    }
    return ctl_rec_query_devices(a->ledger, ctl_dir_txn_mdb(t), &r, devs, n, out);
}

/* The segments of c in [from, to) after after_us, at most max. */
static int cam_query(ctl_api *a, ctl_dir_txn *t, const cam *c, int64_t from, int64_t to,
                     int64_t after_us, size_t max, ctl_rec_list *out)
{
    return devs_query(a, t, c, 0, c->ndev, from, to, after_us, max, out);
}

/* An audit note on the channel: {"channel_id", "from", "to", "segments"}
 * plus start_us for a single segment (start_us >= 0). */
static int audit(ctl_dir_txn *t, const char *actor, const cam *c, const char *action, int64_t from,
                 int64_t to, size_t segments, int64_t start_us)
{
    char f[API_TIME_MAX + 1], e[API_TIME_MAX + 1];
    api_iso_time(from, f, sizeof(f));
    api_iso_time(to, e, sizeof(e));
    cJSON *d = cJSON_CreateObject();
    int rc = -ENOMEM;
    if (d && cJSON_AddNumberToObject(d, "channel_id", (double)c->channel_id) &&
        cJSON_AddStringToObject(d, "from", f) && cJSON_AddStringToObject(d, "to", e) &&
        cJSON_AddNumberToObject(d, "segments", (double)segments) &&
        (start_us < 0 || cJSON_AddNumberToObject(d, "start_us", (double)start_us)))
        rc = ctl_dir_audit_note(t, actor, c->tenant, CTL_KIND_CHANNEL, c->channel_id, action, d);
    cJSON_Delete(d);
    return rc;
}

/* A decimal start time, optionally followed by suffix: 0 or -ENOENT. */
static int parse_start(const char *s, const char *suffix, int64_t *out)
{
    size_t n = s ? strspn(s, "0123456789") : 0;
    if (n == 0 || n > 18 || (s[n] && (!suffix || strcmp(s + n, suffix) != 0)))
        return -ENOENT;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (s[i] - '0');
    *out = v;
    return 0;
}

/* The segment of c that starts at start_us (servable): 0 with *seg, or
 * -ENOENT. The device ids are tried in c's order (the current one first),
 * as the merged list serves a start time held twice. */
static int find_segment(ctl_api *a, ctl_dir_txn *t, const cam *c, int64_t start_us,
                        ctl_rec_seg *seg)
{
    int rc = -ENOENT;
    for (size_t d = 0; rc == -ENOENT && d < c->ndev; d++) {
        ctl_rec_list l;
        /* The walk takes one earlier segment that runs into the range: two. */
        int qrc = devs_query(a, t, c, d, 1, start_us, start_us + 1, 0, 2, &l);
        if (qrc != 0)
            return qrc;
        for (size_t i = 0; i < l.n; i++)
            if (l.v[i].start_us == start_us) {
                *seg = l.v[i];
                seg->dev = (unsigned)d;
                rc = 0;
            }
        ctl_rec_list_clear(&l);
    }
    return rc;
}

/* Opens a segment's file: 0 with *fd and *size, or -ENOENT / -errno. */
static int open_segment(ctl_api *a, const ctl_rec_seg *s, int *fd, uint64_t *size)
{
    char path[PATH_MAX];
    int rc = c2d_path_join(path, sizeof(path), a->data_dir ? a->data_dir : ".", s->path);
    if (rc != 0)
        return rc;
    int f = open(path, O_RDONLY | O_CLOEXEC);
    if (f < 0)
        return -errno;
    struct stat st;
    if (fstat(f, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(f);
        return -EIO;
    }
    *fd = f;
    *size = (uint64_t)st.st_size;
    return 0;
}

/* --- Bearer endpoints --- */

static int add_time(cJSON *o, const char *name, int64_t us)
{
    char ts[API_TIME_MAX + 1];
    api_iso_time(us, ts, sizeof(ts));
    return cJSON_AddStringToObject(o, name, ts) ? 0 : -ENOMEM;
}

/* ?limit= (1..REC_PAGE_MAX) and ?after= (a start_us): 0 or 1 answered. */
static int rec_page_args(api_ctx *x, int64_t *after, size_t *limit)
{
    const char *s = ctl_http_req_query(x->req, "after");
    *after = 0;
    *limit = REC_PAGE_MAX;
    if (s && parse_start(s, NULL, after) != 0)
        return api_fail(x, 422, "invalid_field", "query \"after\" must be a start_us");
    if ((s = ctl_http_req_query(x->req, "limit"))) {
        uint64_t v;
        if (api_parse_id(s, &v) != 0 || v > REC_PAGE_MAX)
            return api_fail(x, 422, "invalid_field", "query \"limit\" must be 1..%d", REC_PAGE_MAX);
        *limit = (size_t)v;
    }
    return 0;
}

static int h_list(api_ctx *x)
{
    cam c;
    int64_t from, to, after;
    size_t limit;
    int rc = caller_cam(x, &c);
    if (rc == 0)
        rc = time_range(x, REC_LIST_MAX_US, &from, &to);
    if (rc == 0)
        rc = rec_page_args(x, &after, &limit);
    if (rc != 0)
        return rc;
    ctl_rec_list l;
    if ((rc = cam_query(x->api, x->t, &c, from, to, after, limit, &l)) != 0)
        return rc;
    ctl_rec_gap *gaps = malloc(GAPS_MAX * sizeof(*gaps));
    cJSON *out = cJSON_CreateObject(), *items = cJSON_AddArrayToObject(out, "items");
    cJSON *gj = cJSON_AddArrayToObject(out, "gaps");
    rc = gaps && items && gj ? 0 : -ENOMEM;
    for (size_t i = 0; rc == 0 && i < l.n; i++) {
        const ctl_rec_seg *s = &l.v[i];
        cJSON *it = cJSON_CreateObject();
        if (!it || add_time(it, "start", s->start_us) ||
            add_time(it, "end", s->start_us + s->duration_us) ||
            !cJSON_AddNumberToObject(it, "start_us", (double)s->start_us) ||
            !cJSON_AddNumberToObject(it, "duration_us", (double)s->duration_us) ||
            !cJSON_AddNumberToObject(it, "size", (double)s->size) ||
            !cJSON_AddStringToObject(it, "sha256", s->sha256)) {
            cJSON_Delete(it);
            rc = -ENOMEM;
            break;
        }
        cJSON_AddItemToArray(items, it);
    }
    /* Gaps of this page: the leading one on the first page, the trailing
     * one on the last. */
    size_t ng = rc == 0 ? ctl_rec_gaps(l.v, l.n, after ? 0 : from, l.more ? 0 : to, CTL_REC_GAP_US,
                                       gaps, GAPS_MAX)
                        : 0;
    if (after && l.n == 0)
        ng = 0;
    for (size_t i = 0; rc == 0 && i < ng && i < GAPS_MAX; i++) {
        cJSON *g = cJSON_CreateObject();
        if (!g || add_time(g, "from", gaps[i].from_us) || add_time(g, "to", gaps[i].to_us) ||
            !cJSON_AddNumberToObject(g, "from_us", (double)gaps[i].from_us) ||
            !cJSON_AddNumberToObject(g, "to_us", (double)gaps[i].to_us)) {
            cJSON_Delete(g);
            rc = -ENOMEM;
            break;
        }
        cJSON_AddItemToArray(gj, g);
    }
    if (rc == 0 && l.more)
        rc =
            cJSON_AddNumberToObject(out, "next_after", (double)l.v[l.n - 1].start_us) ? 0 : -ENOMEM;
    else if (rc == 0)
        rc = cJSON_AddNullToObject(out, "next_after") ? 0 : -ENOMEM;
    free(gaps);
    ctl_rec_list_clear(&l);
    if (rc != 0) {
        cJSON_Delete(out);
        return rc;
    }
    return api_answer(x, 200, out);
}

/* Answers the file of segment s of c; audits a download when actor is set. */
static int answer_segment(api_ctx *x, ctl_dir_txn *t, const char *actor, const cam *c,
                          const ctl_rec_seg *s)
{
    int fd;
    uint64_t size;
    int rc = open_segment(x->api, s, &fd, &size);
    if (rc != 0)
        return rc;
    if (actor && (rc = audit(t, actor, c, "download", s->start_us, s->start_us + s->duration_us, 1,
                             s->start_us)) != 0) {
        close(fd);
        return rc;
    }
    return ctl_http_resp_fd(x->resp, 200, "video/mp2t", fd, size);
}

static int h_segment(api_ctx *x)
{
    cam c;
    int64_t start;
    ctl_rec_seg s;
    int rc = caller_cam(x, &c);
    if (rc == 0)
        rc = parse_start(ctl_http_req_param(x->req, "start_us"), ".ts", &start);
    if (rc == 0)
        rc = find_segment(x->api, x->t, &c, start, &s);
    if (rc == 0)
        rc = answer_segment(x, x->t, x->c.actor, &c, &s);
    return rc;
}

/* Answers the playlist of c over [from, to) with segment URIs prefix +
 * start_us + ".ts"; a playlist with segments is audited as a view by
 * actor. */
static int answer_playlist(api_ctx *x, const char *actor, const cam *c, int64_t from, int64_t to,
                           const char *prefix)
{
    ctl_rec_list l;
    int rc = cam_query(x->api, x->t, c, from, to, 0, PLAYLIST_SEGMENTS_MAX, &l);
    if (rc != 0)
        return rc;
    char *text = NULL;
    size_t len = 0;
    if (l.more)
        rc = api_fail(x, 422, "too_many_segments",
                      "the range holds more than %d segments: ask for a shorter one",
                      PLAYLIST_SEGMENTS_MAX);
    else if ((rc = ctl_rec_playlist(l.v, l.n, CTL_REC_GAP_US, prefix, ".ts", &text, &len)) == 0 &&
             (l.n == 0 || (rc = audit(x->t, actor, c, "view", from, to, l.n, -1)) == 0))
        rc = ctl_http_resp_bytes(x->resp, 200, "application/vnd.apple.mpegurl", text, len);
    free(text);
    ctl_rec_list_clear(&l);
    return rc;
}

static int h_playlist(api_ctx *x)
{
    cam c;
    int64_t from, to;
    int rc = caller_cam(x, &c);
    if (rc == 0)
        rc = time_range(x, PLAYLIST_MAX_US, &from, &to);
    if (rc == 0)
        rc = answer_playlist(x, x->c.actor, &c, from, to, "segments/");
    return rc;
}

static int h_export(api_ctx *x)
{
    cam c;
    int64_t from, to;
    int rc = caller_cam(x, &c);
    if (rc == 0)
        rc = time_range(x, EXPORT_MAX_US, &from, &to);
    if (rc != 0)
        return rc;
    ctl_rec_list l;
    if ((rc = cam_query(x->api, x->t, &c, from, to, 0, EXPORT_SEGMENTS_MAX, &l)) != 0)
        return rc;
    char **paths = NULL;
    char tmp[PATH_MAX];
    if (l.more)
        rc = api_fail(x, 422, "too_many_segments",
                      "the range holds more than %d segments: export a shorter one",
                      EXPORT_SEGMENTS_MAX);
    else if (l.n == 0)
        rc = api_fail(x, 404, "no_recordings", "the channel has no recordings in this range");
    else if (!(paths = calloc(l.n, sizeof(*paths))))
        rc = -ENOMEM;
    else
        rc = c2d_path_join(tmp, sizeof(tmp), x->api->data_dir ? x->api->data_dir : ".", "tmp");
    for (size_t i = 0; rc == 0 && i < l.n; i++) {
        char p[PATH_MAX];
        if ((rc = c2d_path_join(p, sizeof(p), x->api->data_dir ? x->api->data_dir : ".",
                                l.v[i].path)) == 0 &&
            !(paths[i] = strdup(p)))
            rc = -ENOMEM;
    }
    size_t n = l.n;
    ctl_rec_list_clear(&l);
    /* Audited and committed before the remux, which must not hold the
     * write transaction (the committer waits on it) for seconds. */
    if (rc == 0 && (rc = audit(x->t, x->c.actor, &c, "export", from, to, n, -1)) == 0) {
        rc = ctl_dir_commit(x->t);
        x->t = NULL;
    }
    int fd = -1;
    uint64_t size = 0;
    ctl_export_info info;
    if (rc == 0)
        rc = ctl_export_mp4_tmp(tmp, (const char *const *)paths, n, &info, &fd, &size);
    for (size_t i = 0; paths && i < n; i++)
        free(paths[i]);
    free(paths);
    if (rc != 0)
        return rc == -EBADMSG ? api_fail(x, 500, "export_failed",
                                         "the recordings of this range could not be remuxed")
                              : rc;
    char disp[128], start[API_TIME_MAX + 1];
    api_iso_time(from, start, sizeof(start));
    for (char *p = start; *p; p++)
        if (*p == ':')
            *p = '-';
    snprintf(disp, sizeof(disp), "attachment; filename=\"channel-%" PRIu64 "-%s.mp4\"",
             c.channel_id, start);
    if ((rc = ctl_http_resp_header(x->resp, "Content-Disposition", disp)) != 0 ||
        (info.dropped &&
         (rc = ctl_http_resp_header(x->resp, "X-C2D-Dropped-Streams", info.dropped_desc)) != 0)) {
        close(fd);
        return rc;
    }
    return ctl_http_resp_fd(x->resp, 200, "video/mp4", fd, size);
}

/* --- Playback tokens --- */

static const ctl_field playback_fields[] = {
    {"from", CTL_F_STRING, true, 20, API_TIME_MAX, NULL, false},
    {"to", CTL_F_STRING, true, 20, API_TIME_MAX, NULL, false},
};

typedef struct {
    int64_t now;
    uint64_t drop[PLAYBACK_PER_USER_MAX + 1];
    size_t ndrop, live;
    uint64_t oldest_live;
} pb_sweep;

static int sweep_cb(void *ud, const ctl_dir_obj *o)
{
    pb_sweep *s = ud;
    cJSON *j = cJSON_Parse(o->json);
    bool expired = !j || api_jint(j, "expires_us") <= s->now;
    cJSON_Delete(j);
    if (expired) {
        s->drop[s->ndrop++] = o->id;
        return s->ndrop == PLAYBACK_PER_USER_MAX + 1; /* batch full: go round again */
    }
    if (!s->oldest_live)
        s->oldest_live = o->id;
    s->live++;
    return 0;
}

/* Deletes the user's expired playback tokens and, when PLAYBACK_PER_USER_MAX
 * live ones remain, the oldest: the new one makes the maximum. */
static int playback_sweep(api_ctx *x)
{
    for (;;) {
        pb_sweep s = {.now = ctl_dir_txn_now(x->t)};
        int rc = ctl_dir_list_children(x->t, x->c.user, CTL_KIND_PLAYBACK, 0, CTL_DIR_LIST_MAX,
                                       sweep_cb, &s, NULL);
        if (rc < 0)
            return rc;
        if (s.ndrop == 0 && s.live >= PLAYBACK_PER_USER_MAX)
            s.drop[s.ndrop++] = s.oldest_live;
        for (size_t i = 0; i < s.ndrop; i++)
            if ((rc = ctl_dir_del(x->t, NULL, CTL_KIND_PLAYBACK, s.drop[i])) != 0)
                return rc;
        if (s.ndrop == 0)
            return 0;
    }
}

static int h_playback(api_ctx *x)
{
    cam c;
    int64_t from, to;
    int rc = caller_cam(x, &c);
    if (rc != 0)
        return rc;
    if (api_parse_time(api_jstr(x->body, "from"), &from) != 0 ||
        api_parse_time(api_jstr(x->body, "to"), &to) != 0)
        return api_fail(x, 422, "invalid_field",
                        "\"from\" and \"to\" must be RFC 3339 UTC times (2026-11-30T08:00:00Z)");
    if (to <= from)
        return api_fail(x, 422, "invalid_field", "\"to\" must be after \"from\"");
    if (to - from > PLAYLIST_MAX_US)
        return api_fail(x, 422, "range_too_long", "the range may cover at most %" PRId64 " h",
                        PLAYLIST_MAX_US / HOUR_US);
    if ((rc = playback_sweep(x)) != 0)
        return rc;
    char tok[CTL_TOKEN_SIZE], hash[CTL_TOKEN_HASH_SIZE];
    if ((rc = ctl_token_new(x->api->rng, tok, hash)) != 0)
        return rc;
    int64_t expires = ctl_dir_txn_now(x->t) + PLAYBACK_TTL_US;
    cJSON *j = cJSON_CreateObject();
    if (!j || !cJSON_AddNumberToObject(j, "user", (double)x->c.user) ||
        !cJSON_AddNumberToObject(j, "channel_id", (double)c.channel_id) ||
        !cJSON_AddNumberToObject(j, "from_us", (double)from) ||
        !cJSON_AddNumberToObject(j, "to_us", (double)to) ||
        !cJSON_AddNumberToObject(j, "expires_us", (double)expires)) {
        cJSON_Delete(j);
        return -ENOMEM;
    }
    /* Stored like a session: hashed, not audited (its use is). */
    ctl_dir_obj o = {.kind = CTL_KIND_PLAYBACK, .tenant = x->c.tenant, .parent = x->c.user};
    ctl_dir_ukey k = {"playback", hash};
    rc = api_put_json(x->t, NULL, &o, j, &k, 1);
    cJSON_Delete(j);
    if (rc != 0)
        return rc;
    char url[96];
    snprintf(url, sizeof(url), "/api/v1/play/%s/playlist.m3u8", tok);
    cJSON *out = cJSON_CreateObject();
    if (!out || !cJSON_AddStringToObject(out, "url", url) || add_time(out, "expires_at", expires)) {
        cJSON_Delete(out);
        return -ENOMEM;
    }
    return api_answer(x, 201, out);
}

/* A redeemed playback token. */
typedef struct {
    cam c;
    int64_t from, to;
    char actor[API_ACTOR_MAX];
} play;

/* Opens x->t (write or read) and checks the {token}: live, its user still
 * there with recording.view, its channel still in the tenant. 0, or
 * -ENOENT for every refusal (the token is the path: a wrong one is a
 * missing resource), or -errno. */
static int play_begin(api_ctx *x, int write, play *p)
{
    if (!x->api->ledger)
        return unavailable(x);
    const char *tok = ctl_http_req_param(x->req, "token");
    char hash[CTL_TOKEN_HASH_SIZE];
    if (!ctl_token_valid(tok) || ctl_token_hash(tok, hash) != 0)
        return -ENOENT;
    int rc = ctl_dir_begin(x->api->dir, write, &x->t);
    if (rc != 0)
        return rc;
    int kind;
    uint64_t id;
    ctl_dir_obj o = {0}, u = {0};
    cJSON *j = NULL, *uj = NULL;
    if ((rc = ctl_dir_lookup(x->t, "playback", hash, &kind, &id)) != 0 ||
        (rc = kind == CTL_KIND_PLAYBACK ? 0 : -ENOENT) != 0 ||
        (rc = ctl_dir_get(x->t, CTL_KIND_PLAYBACK, id, &o)) != 0)
        goto out;
    rc = -ENOENT;
    if (!(j = cJSON_Parse(o.json)) || api_jint(j, "expires_us") <= ctl_dir_txn_now(x->t))
        goto out;
    uint64_t user = (uint64_t)api_jint(j, "user");
    api_role role;
    if ((rc = ctl_dir_get_in_tenant(x->t, o.tenant, CTL_KIND_USER, user, &u)) != 0 ||
        !(uj = cJSON_Parse(u.json)) ||
        (rc = api_role_resolve(x->t, o.tenant, api_jstr(uj, "role"), &role)) != 0)
        goto out;
    rc = -ENOENT;
    if (!role.role.can_login || !ctl_perm_set_has(&role.role.perms, CTL_PERM_RECORDING_VIEW))
        goto out;
    if ((rc = cam_load(x->t, o.tenant, (uint64_t)api_jint(j, "channel_id"), &p->c)) != 0)
        goto out;
    p->from = api_jint(j, "from_us");
    p->to = api_jint(j, "to_us");
    snprintf(p->actor, sizeof(p->actor), "user:%" PRIu64, user);
out:
    cJSON_Delete(j);
    cJSON_Delete(uj);
    ctl_dir_obj_clear(&o);
    ctl_dir_obj_clear(&u);
    return rc; /* the dispatcher ends x->t */
}

static int h_play_playlist(api_ctx *x)
{
    play p;
    int rc = play_begin(x, 1, &p);
    return rc ? rc : answer_playlist(x, p.actor, &p.c, p.from, p.to, "");
}

static int h_play_segment(api_ctx *x)
{
    play p;
    int64_t start;
    ctl_rec_seg s;
    int rc = parse_start(ctl_http_req_param(x->req, "segment"), ".ts", &start);
    if (rc == 0)
        rc = play_begin(x, 0, &p);
    if (rc == 0)
        rc = find_segment(x->api, x->t, &p.c, start, &s);
    /* Only the token's range: what its playlist lists. */
    if (rc == 0 && !(s.start_us < p.to && s.start_us + s.duration_us > p.from))
        rc = -ENOENT;
    if (rc == 0)
        rc = answer_segment(x, x->t, NULL, &p.c, &s);
    return rc;
}

const api_route api_recordings_routes[] = {
    {"GET", "/api/v1/channels/{id}/recordings", CTL_PERM_RECORDING_VIEW, NULL, 0, h_list, NULL},
    {"GET", "/api/v1/channels/{id}/segments/{start_us}", CTL_PERM_RECORDING_VIEW, NULL, 0,
     h_segment, NULL},
    {"GET", "/api/v1/channels/{id}/playlist.m3u8", CTL_PERM_RECORDING_VIEW, NULL, 0, h_playlist,
     NULL},
    {"GET", "/api/v1/channels/{id}/export.mp4", CTL_PERM_RECORDING_VIEW, NULL, 0, h_export, NULL},
    {"POST", "/api/v1/channels/{id}/playback", CTL_PERM_RECORDING_VIEW, playback_fields,
     sizeof(playback_fields) / sizeof(playback_fields[0]), h_playback, NULL},
    /* The token is the credential: no session (players cannot send one). */
    {"GET", "/api/v1/play/{token}/playlist.m3u8", API_NEED_NONE, NULL, 0, h_play_playlist, NULL},
    {"GET", "/api/v1/play/{token}/{segment}", API_NEED_NONE, NULL, 0, h_play_segment, NULL},
};
const size_t api_recordings_nroutes =
    sizeof(api_recordings_routes) / sizeof(api_recordings_routes[0]);
