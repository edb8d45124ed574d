/* Recordings of one camera: see recordings.h. */
#include "controller/recordings.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The callback's "page full, and one more exists" stop. */
#define STOP_MORE 1

typedef struct {
    const ctl_rec_range *r;
    int64_t cutoff; /* <= 0: none */
    ctl_rec_list *out;
    size_t cap;
} query_ctx;

/* The one rule of what may be served: nothing older than the retention
 * cutoff (issue 4: segments past the disk's retention are never served,
 * even before their files are gone). */
static bool servable(const query_ctx *q, const ctl_seg_key *key, const ctl_segment_rec *rec)
{
    (void)rec;
    return q->cutoff <= 0 || key->start_us >= q->cutoff;
}

static int query_cb(void *ud, const ctl_seg_key *key, const ctl_segment_rec *rec)
{
    query_ctx *q = ud;
    if (q->r->after_us > 0 && key->start_us <= q->r->after_us)
        return 0;
    if (!servable(q, key, rec))
        return 0;
    ctl_rec_list *o = q->out;
    if (o->n == q->r->max) {
        o->more = true;
        return STOP_MORE;
    }
    if (o->n == q->cap) {
        size_t cap = q->cap ? 2 * q->cap : 64;
        if (cap > q->r->max)
            cap = q->r->max;
        ctl_rec_seg *v = realloc(o->v, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        o->v = v;
        q->cap = cap;
    }
    ctl_rec_seg *s = &o->v[o->n++];
    memset(s, 0, sizeof(*s));
    s->start_us = key->start_us;
    s->duration_us = rec->duration_us;
    s->size = rec->size;
    memcpy(s->sha256, rec->sha256, sizeof(s->sha256));
    snprintf(s->path, sizeof(s->path), "%s", rec->path);
    return 0;
}

int ctl_rec_query(ctl_ledger *l, MDB_txn *txn, const ctl_rec_range *r, ctl_rec_list *out)
{
    memset(out, 0, sizeof(*out));
    if (!r || !r->device || r->max == 0 || r->from_us < 0 || (r->to_us && r->to_us <= r->from_us))
        return -EINVAL;
    query_ctx q = {.r = r, .out = out};
    if (r->cutoff)
        q.cutoff = r->cutoff(r->cutoff_ud, r->device, r->channel);
    int64_t from = r->from_us;
    if (r->after_us >= from)
        from = r->after_us + 1;
    if (r->to_us && from >= r->to_us)
        return 0;
    int rc = ctl_ledger_foreach_segment_range(l, txn, r->device, r->channel, from, r->to_us,
                                              query_cb, &q);
    if (rc == STOP_MORE)
        rc = 0;
    if (rc != 0)
        ctl_rec_list_clear(out);
    return rc;
}

int ctl_rec_merge(ctl_rec_list *in, size_t n, size_t max, ctl_rec_list *out)
{
    memset(out, 0, sizeof(*out));
    size_t total = 0, pos[CTL_REC_DEVICES_MAX] = {0};
    int rc = 0;
    if (n > CTL_REC_DEVICES_MAX) {
        rc = -EINVAL;
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        total += in[i].n;
        out->more |= in[i].more;
    }
    if (total > max)
        total = max;
    if (total && !(out->v = malloc(total * sizeof(*out->v)))) {
        rc = -ENOMEM;
        goto done;
    }
    for (;;) {
        /* The earliest head; on a tie the lowest index wins. */
        size_t best = n;
        for (size_t i = 0; i < n; i++)
            if (pos[i] < in[i].n &&
                (best == n || in[i].v[pos[i]].start_us < in[best].v[pos[best]].start_us))
                best = i;
        if (best == n)
            break;
        if (out->n == max) {
            out->more = true;
            break;
        }
        int64_t start = in[best].v[pos[best]].start_us;
        out->v[out->n] = in[best].v[pos[best]++];
        out->v[out->n++].dev = (unsigned)best;
        for (size_t i = 0; i < n; i++) /* the same start time elsewhere: served once */
            while (pos[i] < in[i].n && in[i].v[pos[i]].start_us == start)
                pos[i]++;
    }
done:
    for (size_t i = 0; i < n; i++)
        ctl_rec_list_clear(&in[i]);
    if (rc != 0)
        ctl_rec_list_clear(out);
    return rc;
}

int ctl_rec_query_devices(ctl_ledger *l, MDB_txn *txn, const ctl_rec_range *r,
                          const char *const *devices, size_t n, ctl_rec_list *out)
{
    memset(out, 0, sizeof(*out));
    if (!r || !devices || n == 0 || n > CTL_REC_DEVICES_MAX)
        return -EINVAL;
    /* Each device's first max: the merged first max are among them. */
    ctl_rec_list in[CTL_REC_DEVICES_MAX];
    memset(in, 0, sizeof(in));
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        ctl_rec_range one = *r;
        one.device = devices[i];
        rc = ctl_rec_query(l, txn, &one, &in[i]);
    }
    if (rc == 0)
        return ctl_rec_merge(in, n, r->max, out);
    for (size_t i = 0; i < n; i++)
        ctl_rec_list_clear(&in[i]);
    return rc;
}

void ctl_rec_list_clear(ctl_rec_list *out)
{
    if (!out)
        return;
    free(out->v);
    memset(out, 0, sizeof(*out));
}

static void add_gap(ctl_rec_gap *gaps, size_t max, size_t *n, int64_t from, int64_t to)
{
    if (*n < max) {
        gaps[*n].from_us = from;
        gaps[*n].to_us = to;
    }
    (*n)++;
}

size_t ctl_rec_gaps(const ctl_rec_seg *segs, size_t n, int64_t from_us, int64_t to_us,
                    int64_t tolerance_us, ctl_rec_gap *gaps, size_t max)
{
    size_t ng = 0;
    if (n == 0) {
        if (to_us > from_us)
            add_gap(gaps, max, &ng, from_us, to_us);
        return ng;
    }
    if (from_us && segs[0].start_us - from_us > tolerance_us)
        add_gap(gaps, max, &ng, from_us, segs[0].start_us);
    for (size_t i = 1; i < n; i++)
        if (ctl_rec_after_gap(segs, i, tolerance_us))
            add_gap(gaps, max, &ng, segs[i - 1].start_us + segs[i - 1].duration_us,
                    segs[i].start_us);
    int64_t end = segs[n - 1].start_us + segs[n - 1].duration_us;
    if (to_us && to_us - end > tolerance_us)
        add_gap(gaps, max, &ng, end, to_us);
    return ng;
}

bool ctl_rec_after_gap(const ctl_rec_seg *segs, size_t i, int64_t tolerance_us)
{
    return i > 0 &&
           segs[i].start_us - (segs[i - 1].start_us + segs[i - 1].duration_us) > tolerance_us;
}

/* A growing text buffer bounded by CTL_REC_PLAYLIST_MAX. */
typedef struct {
    char *p;
    size_t len, cap;
    int err;
} textbuf;

__attribute__((format(printf, 2, 3))) static void tb_printf(textbuf *b, const char *fmt, ...)
{
    if (b->err)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->err = -EINVAL;
            return;
        }
        if (b->p && (size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t need = b->len + (size_t)n + 1;
        if (need > CTL_REC_PLAYLIST_MAX) {
            b->err = -EFBIG;
            return;
        }
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < need)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->err = -ENOMEM;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
}

int ctl_rec_playlist(const ctl_rec_seg *segs, size_t n, int64_t tolerance_us,
                     const char *uri_prefix, const char *uri_suffix, char **out, size_t *len)
{
    if (!uri_prefix || !uri_suffix || strpbrk(uri_prefix, "\r\n") || strpbrk(uri_suffix, "\r\n"))
        return -EINVAL;
    int64_t longest = 0;
    for (size_t i = 0; i < n; i++)
        if (segs[i].duration_us > longest)
            longest = segs[i].duration_us;
    /* RFC 8216 4.3.3.1: every EXTINF rounded to the nearest integer must
     * be <= the target; the ceiling of the longest satisfies it. */
    int64_t target = (longest + 999999) / 1000000;
    textbuf b = {0};
    tb_printf(&b,
              "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-PLAYLIST-TYPE:VOD\n"
              "#EXT-X-TARGETDURATION:%" PRId64 "\n#EXT-X-MEDIA-SEQUENCE:0\n",
              target > 0 ? target : 1);
    for (size_t i = 0; i < n; i++) {
        if (ctl_rec_after_gap(segs, i, tolerance_us))
            tb_printf(&b, "#EXT-X-DISCONTINUITY\n");
        int64_t d = segs[i].duration_us > 0 ? segs[i].duration_us : 0;
        tb_printf(&b, "#EXTINF:%" PRId64 ".%06" PRId64 ",\n%s%" PRId64 "%s\n", d / 1000000,
                  d % 1000000, uri_prefix, segs[i].start_us, uri_suffix);
    }
    tb_printf(&b, "#EXT-X-ENDLIST\n");
    if (b.err) {
        free(b.p);
        return b.err;
    }
    *out = b.p;
    *len = b.len;
    return 0;
}
