#include "controller/devmsg.h"

#include "controller/quota.h"

#include "proto/c2d_proto.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Largest integer a JSON number (IEEE double) carries exactly. */
#define JSON_INT_MAX (INT64_C(1) << 53)

/* Unique-key namespaces (controller/devmsg.h). */
#define NS_DEVICE "device"
#define NS_EVENT "devevt"
#define NS_TRIP "trip"
/* "%016x:%016x" + NUL, and room for "<u64>:<event id>" + NUL. */
#define TRIP_KEY_LEN 34
#define EVT_KEY_LEN (20 + 1 + CTL_DEVMSG_ID_MAX + 1)
/* "2026-11-30T08:00:00Z" + NUL. */
#define ISO_LEN 32

enum {
    F_V,
    F_TYPE,
    F_AT,
    F_LAT,
    F_LON,
    F_SPEED,
    F_HEADING,
    F_ID,
    F_EVENT,
    F_CHANNEL,
    F_SEVERITY,
    F_COUNT
};

static const char *const field_names[F_COUNT] = {
    [F_V] = "v",
    [F_TYPE] = "type",
    [F_AT] = "at",
    [F_LAT] = "lat",
    [F_LON] = "lon",
    [F_SPEED] = "speed_kmh",
    [F_HEADING] = "heading",
    [F_ID] = "id",
    [F_EVENT] = "event",
    [F_CHANNEL] = "channel",
    [F_SEVERITY] = "severity",
};

#define BIT(f) (1u << (f))
#define COMMON_FIELDS (BIT(F_V) | BIT(F_TYPE) | BIT(F_AT) | BIT(F_LAT) | BIT(F_LON))
#define LOCATION_FIELDS (COMMON_FIELDS | BIT(F_SPEED) | BIT(F_HEADING))
#define EVENT_FIELDS (COMMON_FIELDS | BIT(F_ID) | BIT(F_EVENT) | BIT(F_CHANNEL) | BIT(F_SEVERITY))

static const char *const severity_names[] = {
    [CTL_DEVMSG_INFO] = "info",
    [CTL_DEVMSG_WARNING] = "warning",
    [CTL_DEVMSG_CRITICAL] = "critical",
};

static void say(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void say(char *why, size_t whylen, const char *fmt, ...)
{
    if (!why || whylen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
}

/* 1 if s is min..max chars, each in the set (event ids and kinds). */
static int token_ok(const char *s, size_t max, int lower_only)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        int ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
        if (!lower_only)
            ok = ok || (c >= 'A' && c <= 'Z') || c == '.' || c == '-';
        if (!ok || n >= max)
            return 0;
    }
    return n > 0;
}

static int in_range(double x, double min, double max)
{
    return x >= min && x <= max; /* false for NaN */
}

static int64_t at_max(int64_t now_us)
{
    int64_t m =
        now_us > INT64_MAX - CTL_DEVMSG_AT_AHEAD_US ? INT64_MAX : now_us + CTL_DEVMSG_AT_AHEAD_US;
    return m < JSON_INT_MAX ? m : JSON_INT_MAX;
}

int ctl_devmsg_valid(const ctl_devmsg *m, int64_t now_us)
{
    if (!m || m->at_us < CTL_DEVMSG_AT_MIN || m->at_us > at_max(now_us))
        return -EINVAL;
    if (m->has_pos && (!in_range(m->lat, -90, 90) || !in_range(m->lon, -180, 180)))
        return -EINVAL;
    if (m->type == CTL_DEVMSG_LOCATION) {
        if (!m->has_pos || (m->has_speed && !in_range(m->speed_kmh, 0, 1000)) ||
            (m->has_heading && !in_range(m->heading, 0, 360)))
            return -EINVAL;
        return 0;
    }
    if (m->type != CTL_DEVMSG_EVENT || m->has_speed || m->has_heading)
        return -EINVAL;
    if (memchr(m->id, '\0', sizeof(m->id)) == NULL || !token_ok(m->id, CTL_DEVMSG_ID_MAX, 0) ||
        memchr(m->event, '\0', sizeof(m->event)) == NULL ||
        !token_ok(m->event, CTL_DEVMSG_EVENT_MAX, 1))
        return -EINVAL;
    if (m->channel < 0 || m->channel > CTL_DEVMSG_CHANNEL_MAX)
        return -EINVAL;
    if ((unsigned)m->severity > CTL_DEVMSG_CRITICAL)
        return -EINVAL;
    return 0;
}

/* Reads number field f within [min, max] (integral if asked). Returns 0, or
 * -EINVAL with why set. */
static int get_num(const cJSON *const *items, int f, double min, double max, int integral,
                   double *out, char *why, size_t whylen)
{
    const cJSON *it = items[f];
    if (!cJSON_IsNumber(it)) {
        say(why, whylen, "bad_field: %s", field_names[f]);
        return -EINVAL;
    }
    double d = it->valuedouble;
    if (!in_range(d, min, max) || (integral && d != floor(d))) {
        say(why, whylen, "out_of_range: %s", field_names[f]);
        return -EINVAL;
    }
    *out = d;
    return 0;
}

/* Fills m from the fields of a parsed message; see ctl_devmsg_parse. */
static int decode(const cJSON *root, int64_t now_us, ctl_devmsg *m, char *why, size_t whylen)
{
    const cJSON *items[F_COUNT] = {0};
    unsigned seen = 0;
    for (const cJSON *it = root->child; it; it = it->next) {
        int f = 0;
        while (f < F_COUNT && strcmp(field_names[f], it->string) != 0)
            f++;
        if (f == F_COUNT) {
            /* Printable: the reason is logged. */
            char name[24];
            size_t i = 0;
            for (; it->string[i] && i + 1 < sizeof(name); i++) {
                unsigned char c = (unsigned char)it->string[i];
                name[i] = c >= 0x20 && c < 0x7f && c != '"' ? (char)c : '?';
            }
            name[i] = '\0';
            say(why, whylen, "unknown_field: %s", name);
            return -EINVAL;
        }
        if (seen & BIT(f)) {
            say(why, whylen, "duplicate_field: %s", field_names[f]);
            return -EINVAL;
        }
        seen |= BIT(f);
        items[f] = it;
    }

    double d;
    if (!items[F_V] || get_num(items, F_V, 0, 65535, 1, &d, why, whylen) != 0) {
        if (!items[F_V])
            say(why, whylen, "missing_field: v");
        return -EINVAL;
    }
    if (d != C2D_PROTO_VERSION) {
        say(why, whylen, "unsupported_version: %d", (int)d);
        return -EINVAL;
    }
    const cJSON *type = items[F_TYPE];
    if (!cJSON_IsString(type)) {
        say(why, whylen, type ? "bad_field: type" : "missing_field: type");
        return -EINVAL;
    }
    unsigned allowed;
    if (strcmp(type->valuestring, "location") == 0) {
        m->type = CTL_DEVMSG_LOCATION;
        allowed = LOCATION_FIELDS;
    } else if (strcmp(type->valuestring, "event") == 0) {
        m->type = CTL_DEVMSG_EVENT;
        allowed = EVENT_FIELDS;
    } else {
        say(why, whylen, "unknown_type");
        return -EINVAL;
    }
    for (int f = 0; f < F_COUNT; f++)
        if ((seen & BIT(f)) && !(allowed & BIT(f))) {
            say(why, whylen, "unknown_field: %s", field_names[f]);
            return -EINVAL;
        }
    unsigned required = BIT(F_AT) | (m->type == CTL_DEVMSG_LOCATION ? BIT(F_LAT) | BIT(F_LON)
                                                                    : BIT(F_ID) | BIT(F_EVENT));
    for (int f = 0; f < F_COUNT; f++)
        if ((required & BIT(f)) && !(seen & BIT(f))) {
            say(why, whylen, "missing_field: %s", field_names[f]);
            return -EINVAL;
        }
    if ((seen & BIT(F_LAT)) != 0 && (seen & BIT(F_LON)) == 0) {
        say(why, whylen, "missing_field: lon");
        return -EINVAL;
    }
    if ((seen & BIT(F_LON)) != 0 && (seen & BIT(F_LAT)) == 0) {
        say(why, whylen, "missing_field: lat");
        return -EINVAL;
    }

    if (get_num(items, F_AT, (double)CTL_DEVMSG_AT_MIN, (double)at_max(now_us), 1, &d, why,
                whylen) != 0)
        return -EINVAL;
    m->at_us = (int64_t)d;
    if (items[F_LAT]) {
        m->has_pos = 1;
        if (get_num(items, F_LAT, -90, 90, 0, &m->lat, why, whylen) != 0 ||
            get_num(items, F_LON, -180, 180, 0, &m->lon, why, whylen) != 0)
            return -EINVAL;
    }
    if (items[F_SPEED]) {
        m->has_speed = 1;
        if (get_num(items, F_SPEED, 0, 1000, 0, &m->speed_kmh, why, whylen) != 0)
            return -EINVAL;
    }
    if (items[F_HEADING]) {
        m->has_heading = 1;
        if (get_num(items, F_HEADING, 0, 360, 0, &m->heading, why, whylen) != 0)
            return -EINVAL;
    }
    if (m->type == CTL_DEVMSG_LOCATION)
        return 0;

    const cJSON *id = items[F_ID], *ev = items[F_EVENT], *sev = items[F_SEVERITY];
    if (!cJSON_IsString(id) || !token_ok(id->valuestring, CTL_DEVMSG_ID_MAX, 0)) {
        say(why, whylen, "bad_field: id");
        return -EINVAL;
    }
    strcpy(m->id, id->valuestring); /* fits: token_ok bounds it */
    if (!cJSON_IsString(ev) || !token_ok(ev->valuestring, CTL_DEVMSG_EVENT_MAX, 1)) {
        say(why, whylen, "bad_field: event");
        return -EINVAL;
    }
    strcpy(m->event, ev->valuestring);
    if (items[F_CHANNEL]) {
        if (get_num(items, F_CHANNEL, 1, CTL_DEVMSG_CHANNEL_MAX, 1, &d, why, whylen) != 0)
            return -EINVAL;
        m->channel = (int)d;
    }
    m->severity = CTL_DEVMSG_INFO;
    if (sev) {
        size_t s = 0, ns = sizeof(severity_names) / sizeof(severity_names[0]);
        while (cJSON_IsString(sev) && s < ns && strcmp(severity_names[s], sev->valuestring) != 0)
            s++;
        if (!cJSON_IsString(sev) || s == ns) {
            say(why, whylen, "bad_field: severity");
            return -EINVAL;
        }
        m->severity = (ctl_devmsg_severity)s;
    }
    return 0;
}

int ctl_devmsg_parse(const void *payload, size_t len, int64_t now_us, ctl_devmsg *out, char *why,
                     size_t whylen)
{
    say(why, whylen, "ok");
    if (len > CTL_DEVMSG_MAX) {
        say(why, whylen, "too_large: %zu bytes", len);
        return -EMSGSIZE;
    }
    if (!payload || len == 0) {
        say(why, whylen, "bad_json: empty");
        return -EINVAL;
    }
    if (!c2d_utf8_valid(payload, len)) {
        say(why, whylen, "bad_utf8");
        return -EINVAL;
    }
    /* Every valid string is plain ASCII of a small alphabet: refusing
     * escapes keeps cJSON's \u0000 (which cuts a string) out. */
    if (memchr(payload, '\\', len)) {
        say(why, whylen, "bad_json: escape in a string");
        return -EINVAL;
    }
    /* A terminated copy: cJSON reads one byte past an unterminated buffer,
     * and require_null_terminated refuses trailing bytes. */
    char text[CTL_DEVMSG_MAX + 1];
    memcpy(text, payload, len);
    text[len] = '\0';
    cJSON *root = cJSON_ParseWithLengthOpts(text, len + 1, NULL, 1);
    if (!root) {
        say(why, whylen, "bad_json");
        return -EINVAL;
    }
    ctl_devmsg m;
    memset(&m, 0, sizeof(m));
    int rc = -EINVAL;
    if (!cJSON_IsObject(root))
        say(why, whylen, "bad_json: not an object");
    else
        rc = decode(root, now_us, &m, why, whylen);
    cJSON_Delete(root);
    if (rc == 0 && ctl_devmsg_valid(&m, now_us) != 0) {
        say(why, whylen, "out_of_range"); /* not reached: decode checks each rule */
        rc = -EINVAL;
    }
    if (rc == 0) {
        say(why, whylen, "ok");
        *out = m;
    }
    return rc;
}

static void iso_time(int64_t us, char buf[ISO_LEN])
{
    time_t s = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(buf, ISO_LEN, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Integers go out as digits: cJSON would print 1.76448e+15. */
static int add_int(cJSON *o, const char *name, uint64_t v)
{
    char buf[24];
    snprintf(buf, sizeof(buf), "%" PRIu64, v);
    return cJSON_AddRawToObject(o, name, buf) != NULL;
}

/* A finite double as the shortest of %.15g..%.17g that reads back exactly:
 * cJSON's own printing keeps %1.15g when it is merely close, which moves a
 * position by its last bits. */
static int add_double(cJSON *o, const char *name, double v)
{
    char buf[32];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, sizeof(buf), "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    return cJSON_AddRawToObject(o, name, buf) != NULL;
}

char *ctl_devmsg_record_json(const ctl_devmsg *m, uint64_t recorder_id)
{
    if (ctl_devmsg_valid(m, INT64_MAX) != 0)
        return NULL;
    char at[ISO_LEN];
    iso_time(m->at_us, at);
    cJSON *o = cJSON_CreateObject();
    int ok = o && add_int(o, "recorder_id", recorder_id);
    if (ok && m->type == CTL_DEVMSG_EVENT)
        ok = cJSON_AddStringToObject(o, "device_event_id", m->id) &&
             cJSON_AddStringToObject(o, "event", m->event);
    ok = ok && cJSON_AddStringToObject(o, "at", at) && add_int(o, "at_us", (uint64_t)m->at_us);
    if (ok && m->channel)
        ok = add_int(o, "channel", (uint64_t)m->channel);
    if (ok && m->has_pos)
        ok = add_double(o, "lat", m->lat) && add_double(o, "lon", m->lon);
    if (ok && m->has_speed)
        ok = add_double(o, "speed_kmh", m->speed_kmh);
    if (ok && m->has_heading)
        ok = add_double(o, "heading", m->heading);
    if (ok && m->type == CTL_DEVMSG_EVENT)
        ok = cJSON_AddStringToObject(o, "severity", severity_names[m->severity]) &&
             cJSON_AddFalseToObject(o, "acknowledged") && cJSON_AddStringToObject(o, "note", "");
    char *text = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return text;
}

static void trip_key(char buf[TRIP_KEY_LEN], uint64_t recorder, int64_t at_us)
{
    snprintf(buf, TRIP_KEY_LEN, "%016" PRIx64 ":%016" PRIx64, recorder, (uint64_t)at_us);
}

/* An event protects its channel's recordings around it from overwrite
 * (issue 4), within its disk's bound: beyond it the event is kept and its
 * recordings are not protected. */
static int protect_event(ctl_ledger *l, ctl_dir_txn *t, const char *device, const ctl_devmsg *m,
                         uint64_t event_id)
{
    if (!l || m->type != CTL_DEVMSG_EVENT || !m->channel)
        return 0;
    int64_t from = m->at_us - CTL_DEVMSG_PROTECT_US, to = m->at_us + CTL_DEVMSG_PROTECT_US;
    int rc = ctl_quota_protect(l, ctl_dir_txn_mdb(t), device, (uint16_t)m->channel,
                               from < 0 ? 0 : from, to, event_id, NULL);
    return rc == -EDQUOT || rc == -EEXIST || rc == -EINVAL ? 0 : rc;
}

/* Stores one message in t. Returns 0 (stored or already there), -ENOENT,
 * -EINVAL, or an error after which t must be aborted. */
static int store_one(ctl_dir_txn *t, ctl_ledger *l, const char *device, const ctl_devmsg *m)
{
    if (!device || !c2d_device_id_valid(device) || ctl_devmsg_valid(m, INT64_MAX) != 0)
        return -EINVAL;
    int kind;
    uint64_t rid;
    int rc = ctl_dir_lookup(t, NS_DEVICE, device, &kind, &rid);
    if (rc != 0)
        return rc;
    if (kind != CTL_KIND_RECORDER)
        return -ENOENT;
    ctl_dir_obj rec;
    if ((rc = ctl_dir_get(t, CTL_KIND_RECORDER, rid, &rec)) != 0)
        return rc == -ENOENT ? -EIO : rc; /* a key without its object */
    uint64_t tenant = rec.tenant;
    ctl_dir_obj_clear(&rec);

    char key[EVT_KEY_LEN > TRIP_KEY_LEN ? EVT_KEY_LEN : TRIP_KEY_LEN];
    const char *ns = m->type == CTL_DEVMSG_EVENT ? NS_EVENT : NS_TRIP;
    if (m->type == CTL_DEVMSG_EVENT)
        snprintf(key, sizeof(key), "%" PRIu64 ":%s", rid, m->id);
    else
        trip_key(key, rid, m->at_us);
    uint64_t held;
    rc = ctl_dir_lookup(t, ns, key, &kind, &held);
    if (rc == 0)
        return 0; /* a redelivery */
    if (rc != -ENOENT)
        return rc;

    char *json = ctl_devmsg_record_json(m, rid);
    if (!json)
        return -ENOMEM;
    char actor[8 + C2D_DEVICE_ID_MAX + 1];
    snprintf(actor, sizeof(actor), "device:%s", device);
    ctl_dir_obj o = {.kind = m->type == CTL_DEVMSG_EVENT ? CTL_KIND_EVENT : CTL_KIND_LOCATION,
                     .tenant = tenant,
                     .parent = rid,
                     .json = json};
    ctl_dir_ukey k = {ns, key};
    rc = ctl_dir_put(t, m->type == CTL_DEVMSG_EVENT ? actor : NULL, &o, &k, 1);
    free(json);
    if (rc == 0)
        rc = protect_event(l, t, device, m, o.id);
    return rc == -EEXIST ? 0 : rc;
}

int ctl_devmsg_store_many(ctl_dir *dir, ctl_ledger *l, const ctl_devmsg_item *items, size_t n,
                          int *results)
{
    if (!dir || !items || !results || n == 0 || n > CTL_DIR_LIST_MAX)
        return -EINVAL;
    ctl_dir_txn *t = NULL;
    int rc = ctl_dir_begin(dir, 1, &t);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        int r = store_one(t, l, items[i].device, items[i].msg);
        if (r == 0 || r == -ENOENT || r == -EINVAL)
            results[i] = r; /* nothing of t was harmed */
        else
            rc = r;
    }
    if (rc == 0)
        rc = ctl_dir_commit(t);
    else
        ctl_dir_abort(t);
    if (rc != 0)
        for (size_t i = 0; i < n; i++)
            results[i] = rc;
    return rc;
}

int ctl_devmsg_store(ctl_dir *dir, const char *device, const ctl_devmsg *m)
{
    ctl_devmsg_item item = {device, m};
    int result;
    int rc = ctl_devmsg_store_many(dir, NULL, &item, 1, &result);
    return rc != 0 ? rc : result;
}

/* Positions for the queries: the object a "trip" key holds, if it is of
 * tenant, appended to arr. */
typedef struct {
    ctl_dir_txn *t;
    uint64_t tenant;
    cJSON *arr;
    int64_t last_at; /* of the last key walked */
    uint64_t last_recorder;
} pos_acc;

static int pos_cb(void *ud, const char *value, int kind, uint64_t id)
{
    pos_acc *a = ud;
    if (strlen(value) == TRIP_KEY_LEN - 1) /* "<recorder>:<at>", both 16 hex digits */
        a->last_at = (int64_t)strtoull(value + 17, NULL, 16);
    if (kind != CTL_KIND_LOCATION)
        return 0;
    ctl_dir_obj o;
    int rc = ctl_dir_get_in_tenant(a->t, a->tenant, CTL_KIND_LOCATION, id, &o);
    if (rc == -ENOENT)
        return 0; /* written for another tenant */
    if (rc != 0)
        return rc;
    cJSON *p = cJSON_Parse(o.json);
    ctl_dir_obj_clear(&o);
    if (!p)
        return -ENOMEM; /* stored texts were parsed when they were put */
    cJSON_AddItemToArray(a->arr, p);
    return 0;
}

/* The latest position of each recorder of a page of the tenant's list. */
static int live_cb(void *ud, const ctl_dir_obj *rec)
{
    pos_acc *a = ud;
    char from[TRIP_KEY_LEN], to[TRIP_KEY_LEN];
    a->last_recorder = rec->id;
    snprintf(from, sizeof(from), "%016" PRIx64 ":", rec->id);
    snprintf(to, sizeof(to), "%016" PRIx64 ";", rec->id); /* ';' follows ':' */
    return ctl_dir_ukey_range(a->t, NS_TRIP, from, to, 1, 1, pos_cb, a, NULL);
}

int ctl_devmsg_live(ctl_dir_txn *t, uint64_t tenant, cJSON **out)
{
    pos_acc a = {t, tenant, cJSON_CreateArray(), 0, 0};
    if (!a.arr)
        return -ENOMEM;
    size_t n;
    int rc;
    do {
        uint64_t after = a.last_recorder;
        rc = ctl_dir_list_tenant(t, tenant, CTL_KIND_RECORDER, after, CTL_DIR_LIST_MAX, live_cb, &a,
                                 &n);
    } while (rc == 0 && n == CTL_DIR_LIST_MAX);
    if (rc != 0) {
        cJSON_Delete(a.arr);
        return rc;
    }
    *out = a.arr;
    return 0;
}

int ctl_devmsg_trip(ctl_dir_txn *t, uint64_t tenant, uint64_t recorder_id, int64_t from_us,
                    int64_t to_us, size_t limit, cJSON **out, int64_t *next_us)
{
    if (limit == 0 || limit > CTL_DIR_LIST_MAX || !out || !next_us)
        return -EINVAL;
    if (recorder_id == 0)
        return -ENOENT;
    ctl_dir_obj rec;
    int rc = ctl_dir_get_in_tenant(t, tenant, CTL_KIND_RECORDER, recorder_id, &rec);
    if (rc != 0)
        return rc;
    ctl_dir_obj_clear(&rec);
    pos_acc a = {t, tenant, cJSON_CreateArray(), 0, 0};
    if (!a.arr)
        return -ENOMEM;
    if (from_us < 0)
        from_us = 0;
    size_t n = 0;
    if (to_us <= 0 || from_us < to_us) {
        char from[TRIP_KEY_LEN], to[TRIP_KEY_LEN];
        trip_key(from, recorder_id, from_us);
        if (to_us > 0)
            trip_key(to, recorder_id, to_us);
        else
            snprintf(to, sizeof(to), "%016" PRIx64 ";", recorder_id);
        rc = ctl_dir_ukey_range(t, NS_TRIP, from, to, 0, limit, pos_cb, &a, &n);
    }
    if (rc != 0) {
        cJSON_Delete(a.arr);
        return rc;
    }
    *out = a.arr;
    *next_us = n == limit && a.last_at < INT64_MAX && (to_us <= 0 || a.last_at + 1 < to_us)
                   ? a.last_at + 1
                   : 0;
    return 0;
}
