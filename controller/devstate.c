#include "controller/devstate.h"

#include "controller/devtable.h"
#include "proto/c2d_proto.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Integers a JSON number carries exactly. */
#define JSON_INT_MAX 9007199254740992.0

typedef struct {
    char device[C2D_DEVICE_ID_MAX + 1];
    int64_t last_seen_us; /* 0: no message yet (only a published version) */
    int stale;            /* no message for offline_after */
    int has_msg;
    ctl_devstate_msg msg;
    cJSON *json; /* the latest message */
    int has_published;
    uint64_t published;
    size_t nalarms;
    ctl_alarm *alarms;                    /* CTL_DEVSTATE_ALARMS_MAX */
    uint64_t limited_msgs, limited_bytes; /* rate limit drops, in all */
    int64_t limited_us;                   /* the latest reported; 0: none */
} entry;
_Static_assert(offsetof(entry, device) == 0, "a devtable entry starts with its device id");

struct ctl_devstate {
    pthread_mutex_t mu;
    int64_t offline_after_us;
    int64_t default_retention_s;
    ctl_devtable t; /* of entry */
    uint64_t refused;
};

static int why_set(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int why_set(char *why, size_t whylen, const char *fmt, ...)
{
    if (why && whylen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, whylen, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

/* A JSON integer in [min, max]: 0 with *out, else -EINVAL. */
static int json_int(const cJSON *j, double min, double max, int64_t *out)
{
    if (!cJSON_IsNumber(j))
        return -EINVAL;
    double d = j->valuedouble;
    if (!(d >= min && d <= max) || d != (double)(int64_t)d)
        return -EINVAL;
    *out = (int64_t)d;
    return 0;
}

static int copy_word(const cJSON *j, char *dst, size_t len)
{
    if (!cJSON_IsString(j) || !j->valuestring)
        return -EINVAL;
    size_t n = strlen(j->valuestring);
    if (n >= len)
        return -EINVAL;
    memcpy(dst, j->valuestring, n + 1);
    return 0;
}

static int parse_channels(const cJSON *a, ctl_devstate_msg *m, char *why, size_t whylen)
{
    if (!cJSON_IsArray(a))
        return why_set(why, whylen, "bad_field: channels");
    const cJSON *c;
    cJSON_ArrayForEach(c, a)
    {
        size_t i = m->nch;
        if (i == CTL_DEVSTATE_CHANNELS_MAX)
            return why_set(why, whylen, "too_many: channels");
        int64_t id;
        if (!cJSON_IsObject(c))
            return why_set(why, whylen, "bad_field: channels[%zu]", i);
        if (json_int(cJSON_GetObjectItemCaseSensitive(c, "id"), 0, 65535, &id) != 0)
            return why_set(why, whylen, "bad_field: channels[%zu].id", i);
        if (copy_word(cJSON_GetObjectItemCaseSensitive(c, "state"), m->ch[i].state,
                      sizeof(m->ch[i].state)) != 0)
            return why_set(why, whylen, "bad_field: channels[%zu].state", i);
        m->ch[i].id = (uint16_t)id;
        m->nch++;
    }
    return 0;
}

int ctl_devstate_parse(const void *payload, size_t len, ctl_devstate_msg *out, cJSON **json,
                       char *why, size_t whylen)
{
    if (len > CTL_DEVSTATE_MAX) {
        why_set(why, whylen, "too_large");
        return -EMSGSIZE;
    }
    if (len == 0 || !c2d_utf8_valid(payload, len) || memchr(payload, '\0', len))
        return why_set(why, whylen, len ? "bad_utf8" : "empty");
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(payload, len, &end, 0);
    if (!j)
        return why_set(why, whylen, "bad_json");
    /* Only whitespace may follow the object. */
    for (const char *p = end; p < (const char *)payload + len; p++)
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
            cJSON_Delete(j);
            return why_set(why, whylen, "bad_json: trailing bytes");
        }
    ctl_devstate_msg *m = calloc(1, sizeof(*m));
    if (!m) {
        cJSON_Delete(j);
        return -ENOMEM;
    }
    m->spool_oldest_age_s = -1;
    m->retention_s = -1;
    int rc = 0;
    const cJSON *f;
    int64_t v;
    if (!cJSON_IsObject(j)) {
        rc = why_set(why, whylen, "bad_json: not an object");
        goto done;
    }
    f = cJSON_GetObjectItemCaseSensitive(j, "online");
    if (!cJSON_IsBool(f)) {
        rc = why_set(why, whylen, f ? "bad_field: online" : "missing_field: online");
        goto done;
    }
    m->online = cJSON_IsTrue(f);
    f = cJSON_GetObjectItemCaseSensitive(j, "cfg_version");
    if (f && !cJSON_IsNull(f)) {
        if (json_int(f, 0, JSON_INT_MAX, &v) != 0) {
            rc = why_set(why, whylen, "bad_field: cfg_version");
            goto done;
        }
        m->has_cfg_version = 1;
        m->cfg_version = (uint64_t)v;
    }
    f = cJSON_GetObjectItemCaseSensitive(j, "uptime_s");
    if (f && json_int(f, 0, JSON_INT_MAX, &v) != 0) {
        rc = why_set(why, whylen, "bad_field: uptime_s");
        goto done;
    }
    f = cJSON_GetObjectItemCaseSensitive(j, "disk");
    if (f && copy_word(f, m->disk, sizeof(m->disk)) != 0) {
        rc = why_set(why, whylen, "bad_field: disk");
        goto done;
    }
    f = cJSON_GetObjectItemCaseSensitive(j, "recorder_retention_s");
    if (f && !cJSON_IsNull(f) && json_int(f, 0, JSON_INT_MAX, &m->retention_s) != 0) {
        rc = why_set(why, whylen, "bad_field: recorder_retention_s");
        goto done;
    }
    f = cJSON_GetObjectItemCaseSensitive(j, "spool");
    if (f) {
        if (!cJSON_IsObject(f)) {
            rc = why_set(why, whylen, "bad_field: spool");
            goto done;
        }
        const cJSON *age = cJSON_GetObjectItemCaseSensitive(f, "oldest_age_s");
        if (age && !cJSON_IsNull(age) &&
            json_int(age, 0, JSON_INT_MAX, &m->spool_oldest_age_s) != 0) {
            rc = why_set(why, whylen, "bad_field: spool.oldest_age_s");
            goto done;
        }
    }
    f = cJSON_GetObjectItemCaseSensitive(j, "channels");
    if (f && (rc = parse_channels(f, m, why, whylen)) != 0)
        goto done;
    *out = *m;
    if (why && whylen)
        snprintf(why, whylen, "ok");
    if (json) {
        *json = j;
        j = NULL;
    }
done:
    free(m);
    cJSON_Delete(j);
    return rc;
}

static size_t add_alarm(ctl_alarm *out, size_t n, const char *code, int channel, const char *detail)
{
    ctl_alarm *a = &out[n];
    memset(a, 0, sizeof(*a));
    snprintf(a->code, sizeof(a->code), "%s", code);
    a->channel = channel;
    snprintf(a->detail, sizeof(a->detail), "%s", detail);
    return n + 1;
}

size_t ctl_devstate_rules(const ctl_devstate_msg *m, int online, int64_t default_retention_s,
                          ctl_alarm *out)
{
    size_t n = 0;
    char detail[96];
    if (!online)
        return add_alarm(out, n, "offline", -1, "no state from the device");
    if (m->disk[0] && strcmp(m->disk, "ok") != 0) {
        snprintf(detail, sizeof(detail), "disk %s", m->disk);
        n = add_alarm(out, n, "disk", -1, detail);
    }
    for (size_t i = 0; i < m->nch; i++) {
        const char *st = m->ch[i].state;
        /* finished: a file source read to its end, as asked. */
        if (strcmp(st, "recording") == 0 || strcmp(st, "starting") == 0 ||
            strcmp(st, "finished") == 0)
            continue;
        snprintf(detail, sizeof(detail), "channel %u %s", m->ch[i].id, st);
        n = add_alarm(out, n, "channel", m->ch[i].id, detail);
    }
    int64_t ret = m->retention_s >= 0 ? m->retention_s : default_retention_s;
    if (ret > 0 && m->spool_oldest_age_s > ret) {
        snprintf(detail, sizeof(detail), "oldest unsent %llds old, retention %llds",
                 (long long)m->spool_oldest_age_s, (long long)ret);
        n = add_alarm(out, n, "spool_age", -1, detail);
    }
    return n;
}

int ctl_devstate_new(int64_t offline_after_s, int64_t default_retention_s, ctl_devstate **out)
{
    if (offline_after_s < 1 || offline_after_s > INT64_MAX / 1000000 || default_retention_s < 0)
        return -EINVAL;
    ctl_devstate *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    if (pthread_mutex_init(&s->mu, NULL) != 0) {
        free(s);
        return -ENOMEM;
    }
    s->offline_after_us = offline_after_s * 1000000;
    s->default_retention_s = default_retention_s;
    *out = s;
    return 0;
}

static void entry_free(entry *e)
{
    if (!e)
        return;
    cJSON_Delete(e->json);
    free(e->alarms);
    free(e);
}

void ctl_devstate_free(ctl_devstate *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->t.n; i++)
        entry_free(s->t.v[i]);
    ctl_devtable_clear(&s->t);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* The entry of device, or NULL (if none). */
static entry *find(const ctl_devstate *s, const char *device)
{
    int found;
    size_t i = ctl_devtable_find(&s->t, device, &found);
    return found ? s->t.v[i] : NULL;
}

static entry *get_or_add(ctl_devstate *s, const char *device, int *err)
{
    int found;
    size_t i = ctl_devtable_find(&s->t, device, &found);
    if (found)
        return s->t.v[i];
    int rc = ctl_devtable_reserve(&s->t, CTL_DEVSTATE_DEVICES_MAX);
    if (rc != 0) {
        *err = rc;
        return NULL;
    }
    entry *e = calloc(1, sizeof(*e));
    if (e)
        e->alarms = calloc(CTL_DEVSTATE_ALARMS_MAX, sizeof(*e->alarms));
    if (!e || !e->alarms) {
        entry_free(e);
        *err = -ENOMEM;
        return NULL;
    }
    snprintf(e->device, sizeof(e->device), "%s", device);
    ctl_devtable_insert(&s->t, i, e);
    return e;
}

static int entry_online(const entry *e)
{
    return e->has_msg && e->msg.online && !e->stale;
}

static int limited_active(const entry *e, int64_t now_us)
{
    return e->limited_us && now_us - e->limited_us < CTL_DEVSTATE_LIMITED_ALARM_S * 1000000;
}

static int has_alarm(const entry *e, const char *code)
{
    for (size_t i = 0; i < e->nalarms; i++)
        if (strcmp(e->alarms[i].code, code) == 0)
            return 1;
    return 0;
}

/* Recomputes e's alarms, keeping the start time of those that stand. */
static void recompute(ctl_devstate *s, entry *e, int64_t now_us)
{
    ctl_alarm now[CTL_DEVSTATE_ALARMS_MAX];
    size_t n = 0;
    if (e->has_msg)
        n = ctl_devstate_rules(&e->msg, entry_online(e), s->default_retention_s, now);
    if (limited_active(e, now_us)) {
        char detail[96];
        snprintf(detail, sizeof(detail), "%llu messages dropped over the rate limit",
                 (unsigned long long)e->limited_msgs);
        n = add_alarm(now, n, "rate_limited", -1, detail);
    }
    for (size_t i = 0; i < n; i++) {
        now[i].since_us = now_us;
        for (size_t k = 0; k < e->nalarms; k++)
            if (strcmp(e->alarms[k].code, now[i].code) == 0 &&
                e->alarms[k].channel == now[i].channel)
                now[i].since_us = e->alarms[k].since_us;
    }
    memcpy(e->alarms, now, n * sizeof(*now));
    e->nalarms = n;
}

int ctl_devstate_update(ctl_devstate *s, const char *device, const void *payload, size_t len,
                        int64_t now_us, char *why, size_t whylen)
{
    if (!c2d_device_id_valid(device))
        return why_set(why, whylen, "bad_device");
    if (len == 0) { /* retained message cleared: forget the device */
        pthread_mutex_lock(&s->mu);
        int found;
        size_t i = ctl_devtable_find(&s->t, device, &found);
        if (found)
            entry_free(ctl_devtable_remove(&s->t, i));
        pthread_mutex_unlock(&s->mu);
        return 0;
    }
    ctl_devstate_msg m;
    cJSON *j = NULL;
    int rc = ctl_devstate_parse(payload, len, &m, &j, why, whylen);
    pthread_mutex_lock(&s->mu);
    if (rc != 0) {
        s->refused++;
        pthread_mutex_unlock(&s->mu);
        return rc;
    }
    entry *e = get_or_add(s, device, &rc);
    if (e) {
        cJSON_Delete(e->json);
        e->json = j;
        j = NULL;
        e->msg = m;
        e->has_msg = 1;
        e->stale = 0;
        e->last_seen_us = now_us;
        recompute(s, e, now_us);
    }
    pthread_mutex_unlock(&s->mu);
    cJSON_Delete(j);
    return rc;
}

size_t ctl_devstate_tick(ctl_devstate *s, int64_t now_us)
{
    size_t n = 0;
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->t.n; i++) {
        entry *e = s->t.v[i];
        if (e->limited_us && !limited_active(e, now_us) && has_alarm(e, "rate_limited"))
            recompute(s, e, now_us); /* the flood ended: rate_limited goes */
        if (!e->has_msg || e->stale || now_us - e->last_seen_us < s->offline_after_us)
            continue;
        int was = entry_online(e);
        e->stale = 1;
        recompute(s, e, now_us);
        n += was;
    }
    pthread_mutex_unlock(&s->mu);
    return n;
}

void ctl_devstate_set_limited(ctl_devstate *s, const char *device, uint64_t msgs, uint64_t bytes,
                              int64_t now_us)
{
    if (!c2d_device_id_valid(device))
        return;
    int err = 0;
    pthread_mutex_lock(&s->mu);
    entry *e = get_or_add(s, device, &err);
    if (e) {
        e->limited_msgs = msgs;
        e->limited_bytes = bytes;
        e->limited_us = now_us > 0 ? now_us : 1;
        recompute(s, e, now_us);
    }
    pthread_mutex_unlock(&s->mu);
}

void ctl_devstate_set_published(ctl_devstate *s, const char *device, uint64_t version)
{
    if (!c2d_device_id_valid(device))
        return;
    int err = 0;
    pthread_mutex_lock(&s->mu);
    entry *e = get_or_add(s, device, &err);
    if (e) {
        e->has_published = 1;
        e->published = version;
    }
    pthread_mutex_unlock(&s->mu);
}

static void iso_time(int64_t us, char *buf, size_t len)
{
    time_t t = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int add_time(cJSON *o, const char *k, int64_t us)
{
    char ts[32];
    if (us <= 0)
        return cJSON_AddNullToObject(o, k) ? 0 : -ENOMEM;
    iso_time(us, ts, sizeof(ts));
    return cJSON_AddStringToObject(o, k, ts) ? 0 : -ENOMEM;
}

static int add_alarms(const entry *e, uint64_t recorder_id, cJSON *arr)
{
    for (size_t i = 0; i < e->nalarms; i++) {
        const ctl_alarm *a = &e->alarms[i];
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddItemToArray(arr, o)) {
            cJSON_Delete(o);
            return -ENOMEM;
        }
        if ((recorder_id && !cJSON_AddNumberToObject(o, "recorder_id", (double)recorder_id)) ||
            !cJSON_AddStringToObject(o, "device", e->device) ||
            !cJSON_AddStringToObject(o, "code", a->code) ||
            !(a->channel >= 0 ? cJSON_AddNumberToObject(o, "channel", a->channel)
                              : cJSON_AddNullToObject(o, "channel")) ||
            add_time(o, "since", a->since_us) != 0 ||
            !cJSON_AddNumberToObject(o, "since_us", (double)a->since_us) ||
            !cJSON_AddStringToObject(o, "detail", a->detail))
            return -ENOMEM;
    }
    return 0;
}

static int entry_json(const entry *e, const char *device, cJSON *o)
{
    int ok = cJSON_AddStringToObject(o, "device", device) &&
             cJSON_AddBoolToObject(o, "online", e && entry_online(e)) &&
             add_time(o, "last_seen", e ? e->last_seen_us : 0) == 0;
    if (!ok)
        return -ENOMEM;
    if (e && e->json) {
        cJSON *c = cJSON_Duplicate(e->json, 1);
        if (!c || !cJSON_AddItemToObject(o, "state", c)) {
            cJSON_Delete(c);
            return -ENOMEM;
        }
    } else if (!cJSON_AddNullToObject(o, "state")) {
        return -ENOMEM;
    }
    cJSON *v = cJSON_AddObjectToObject(o, "cfg_version");
    if (!v)
        return -ENOMEM;
    int has_applied = e && e->has_msg && e->msg.has_cfg_version;
    ok = (has_applied ? cJSON_AddNumberToObject(v, "applied", (double)e->msg.cfg_version)
                      : cJSON_AddNullToObject(v, "applied")) &&
         (e && e->has_published ? cJSON_AddNumberToObject(v, "published", (double)e->published)
                                : cJSON_AddNullToObject(v, "published"));
    if (ok && e && (e->limited_msgs || e->limited_bytes)) {
        cJSON *l = cJSON_AddObjectToObject(o, "rate_limited");
        ok = l && cJSON_AddNumberToObject(l, "dropped_messages", (double)e->limited_msgs) &&
             cJSON_AddNumberToObject(l, "dropped_bytes", (double)e->limited_bytes) &&
             add_time(l, "last", e->limited_us) == 0;
    } else if (ok) {
        ok = cJSON_AddNullToObject(o, "rate_limited") != NULL;
    }
    cJSON *arr = ok ? cJSON_AddArrayToObject(o, "alarms") : NULL;
    if (!arr)
        return -ENOMEM;
    return e ? add_alarms(e, 0, arr) : 0;
}

int ctl_devstate_json(ctl_devstate *s, const char *device, cJSON **out)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return -ENOMEM;
    pthread_mutex_lock(&s->mu);
    int rc = entry_json(find(s, device), device, o);
    pthread_mutex_unlock(&s->mu);
    if (rc != 0) {
        cJSON_Delete(o);
        return rc;
    }
    *out = o;
    return 0;
}

int ctl_devstate_alarms_json(ctl_devstate *s, const char *device, uint64_t recorder_id, cJSON *arr)
{
    pthread_mutex_lock(&s->mu);
    const entry *e = find(s, device);
    int rc = e ? add_alarms(e, recorder_id, arr) : 0;
    pthread_mutex_unlock(&s->mu);
    return rc;
}

uint64_t ctl_devstate_refused(ctl_devstate *s)
{
    pthread_mutex_lock(&s->mu);
    uint64_t n = s->refused;
    pthread_mutex_unlock(&s->mu);
    return n;
}
