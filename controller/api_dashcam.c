/* The dashcam platform's objects: groups, bookmarks, geofences, events,
 * drivers, regional settings and the map. */
#include "controller/api_int.h"

#include "controller/devmsg.h"
#include "controller/geo.h"
#include "controller/quota.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Dashcams of one group or geofence: a fleet's worth; bounds the checks a
 * request makes and the stored object (~10 bytes an id). */
#define MEMBERS_MAX 500
/* A bookmark spans at most one day: it protects segments from expiry
 * (issue 4), so a client must not pin a whole disk with one. */
#define BOOKMARK_SPAN_MAX_US (INT64_C(86400) * 1000000)
/* License numbers, phone numbers. */
#define LICENSE_MAX 64
#define PHONE_MAX 32
/* IANA zone names: "America/Argentina/ComodRivadavia" is the longest. */
#define ZONE_MAX 64
#define ZONEINFO_DIR "/usr/share/zoneinfo/"
/* Objects one walk reads at a time. */
#define WALK 100

#define F(t) t, sizeof(t) / sizeof((t)[0])

/* --- Helpers --- */

/* 1 if id is a dashcam of the caller's space, 0 if not, or -errno. */
static int dashcam_exists(api_ctx *x, uint64_t id)
{
    ctl_dir_obj o;
    cJSON *j;
    int rc = api_get_json(x, CTL_KIND_RECORDER, id, &o, &j);
    if (rc == -ENOENT)
        return 0;
    if (rc != 0)
        return rc;
    rc = api_dashcam_kind.visible(j) ? 1 : 0;
    cJSON_Delete(j);
    ctl_dir_obj_clear(&o);
    return rc;
}

/* Checks the "dashcam_ids" of after (groups and geofences). When the
 * client sent the list (strict), an id that is not a dashcam of the space
 * is refused (422 naming it); otherwise (a PUT of other fields) ids of
 * dashcams deleted since are dropped. A new object gets an empty list. */
static int check_members(api_ctx *x, const cJSON *before, cJSON *after)
{
    cJSON *ids = cJSON_GetObjectItemCaseSensitive(after, "dashcam_ids");
    if (!ids)
        return before || cJSON_AddArrayToObject(after, "dashcam_ids") ? 0 : -ENOMEM;
    bool strict = !before || cJSON_GetObjectItemCaseSensitive(x->body, "dashcam_ids");
    int i = 0;
    for (cJSON *e = ids->child, *next; e; e = next, i++) {
        next = e->next;
        int rc = dashcam_exists(x, (uint64_t)e->valuedouble);
        if (rc < 0)
            return rc;
        if (rc)
            continue;
        if (strict)
            return api_fail(x, 422, "invalid_field", "field \"dashcam_ids[%d]\": no such dashcam",
                            i);
        cJSON_Delete(cJSON_DetachItemViaPointer(ids, e));
    }
    return 0;
}

/* Deleting a dashcam leaves its id in groups and geofences (api_objects.c
 * does not know them): the public form leaves out ids that are no longer
 * dashcams of the space, and the next PUT drops them (check_members). */
static int members_decorate(api_ctx *x, const ctl_dir_obj *o, cJSON *out)
{
    (void)o;
    cJSON *ids = cJSON_GetObjectItemCaseSensitive(out, "dashcam_ids");
    for (cJSON *e = cJSON_IsArray(ids) ? ids->child : NULL, *next; e; e = next) {
        next = e->next;
        int rc = dashcam_exists(x, (uint64_t)e->valuedouble);
        if (rc < 0)
            return rc;
        if (!rc)
            cJSON_Delete(cJSON_DetachItemViaPointer(ids, e));
    }
    return 0;
}

/* Sets the unique key ns "<tenant>:<value>" of o: 0, 1 with a 409 code
 * answered if another object holds it, or -errno. */
static int unique_in_space(api_ctx *x, const ctl_dir_obj *o, api_keys *keys, const char *ns,
                           const char *value, const char *code, const char *msg)
{
    int rc = api_keys_add(keys, ns, "%" PRIu64 ":%s", x->c.tenant, value);
    if (rc != 0)
        return rc;
    int kind;
    uint64_t id;
    rc = ctl_dir_lookup(x->t, ns, keys->value[keys->n - 1], &kind, &id);
    if (rc == 0 && id != o->id)
        return api_fail(x, 409, code, "%s", msg);
    return rc == -ENOENT ? 0 : rc;
}

typedef struct {
    uint64_t ids[WALK];
    size_t n;
    uint64_t last;
    uint64_t match; /* driver id */
} id_page;

/* --- Groups --- */

static const ctl_field group_fields[] = {
    {"name", CTL_F_STRING, true, 1, API_NAME_MAX, NULL, false},
    {"dashcam_ids", CTL_F_IDS, false, 0, MEMBERS_MAX, NULL, false},
    {"description", CTL_F_TEXT, false, 0, API_TEXT_MAX, NULL, true},
};

static int group_prepare(api_ctx *x, const cJSON *before, cJSON *after, ctl_dir_obj *o,
                         api_keys *keys)
{
    int rc = check_members(x, before, after);
    if (rc == 0)
        rc = unique_in_space(x, o, keys, "group", api_jstr(after, "name"), "name_taken",
                             "a group with this name exists");
    return rc;
}

static const char *const group_filters[] = {"name", NULL};

static const api_kind group_kind = {
    .kind = CTL_KIND_GROUP,
    .noun = "group",
    .plural = "groups",
    .perm_get = CTL_PERM_GROUP_GET,
    .perm_add = CTL_PERM_GROUP_ADD,
    .perm_modify = CTL_PERM_GROUP_MODIFY,
    .perm_delete = CTL_PERM_GROUP_DELETE,
    .create = group_fields,
    .ncreate = sizeof(group_fields) / sizeof(group_fields[0]),
    .filters = group_filters,
    .prepare = group_prepare,
    .decorate = members_decorate,
};

/* --- Bookmarks --- */

static const ctl_field bookmark_fields[] = {
    {"channel_id", CTL_F_ID, true, 0, 0, NULL, false},
    {"start", CTL_F_STRING, true, 1, API_TIME_MAX, NULL, false},
    {"end", CTL_F_STRING, true, 1, API_TIME_MAX, NULL, false},
    {"name", CTL_F_STRING, true, 1, API_NAME_MAX, NULL, false},
    {"note", CTL_F_TEXT, false, 0, API_TEXT_MAX, NULL, true},
};

/* Bookmarks are created, never changed: only create comes here. The
 * times are also stored as µs for issue 4's segment protection. */
static int bookmark_prepare(api_ctx *x, const cJSON *before, cJSON *after, ctl_dir_obj *o,
                            api_keys *keys)
{
    (void)before, (void)o, (void)keys;
    int64_t start, end;
    if (api_parse_time(api_jstr(after, "start"), &start) != 0)
        return api_fail(x, 422, "invalid_field",
                        "field \"start\" must be an RFC 3339 UTC time (2026-11-30T08:00:00Z)");
    if (api_parse_time(api_jstr(after, "end"), &end) != 0)
        return api_fail(x, 422, "invalid_field",
                        "field \"end\" must be an RFC 3339 UTC time (2026-11-30T08:00:00Z)");
    if (end <= start)
        return api_fail(x, 422, "invalid_field", "field \"end\" must be after \"start\"");
    if (end - start > BOOKMARK_SPAN_MAX_US)
        return api_fail(x, 422, "invalid_field", "field \"end\": a bookmark spans at most 24 h");
    if (!cJSON_AddNumberToObject(after, "start_us", (double)start) ||
        !cJSON_AddNumberToObject(after, "end_us", (double)end))
        return -ENOMEM;
    return 0;
}

static const char *const bookmark_filters[] = {"name", NULL};

/* A bookmark protects its channel's recordings from overwrite (issue 4),
 * within the bound of its disk (quota.h): on (1) when made, off (0) when
 * removed. A channel whose recorder has no device id yet has no
 * recordings: nothing to do. */
static int bookmark_protect(api_ctx *x, const ctl_dir_obj *o, const cJSON *j, int on)
{
    ctl_ledger *l = x->api->ledger;
    ctl_dir_obj c, r;
    cJSON *cj, *rj;
    if (!l)
        return 0;
    int rc = api_get_json(x, CTL_KIND_CHANNEL, (uint64_t)api_jint(j, "channel_id"), &c, &cj);
    if (rc != 0)
        return rc;
    if ((rc = api_get_json(x, CTL_KIND_RECORDER, c.parent, &r, &rj)) != 0) {
        cJSON_Delete(cj);
        ctl_dir_obj_clear(&c);
        return rc;
    }
    const char *dev = api_jstr(rj, "device_id");
    uint16_t ch = (uint16_t)api_jint(cj, "number");
    int64_t from = api_jint(j, "start_us"), to = api_jint(j, "end_us");
    MDB_txn *txn = ctl_dir_txn_mdb(x->t);
    if (dev && on)
        rc = ctl_quota_protect(l, txn, dev, ch, from, to, o->id, NULL);
    else if (dev)
        rc = ctl_quota_unprotect(l, txn, dev, ch, from, to, o->id);
    if (rc == -EDQUOT)
        rc = api_fail(x, 409, "protection_limit",
                      "protected recordings would take more than half of the virtual disk");
    else if (rc == -ENOENT && !on)
        rc = 0; /* made before the recorder had its device id */
    cJSON_Delete(rj);
    ctl_dir_obj_clear(&r);
    cJSON_Delete(cj);
    ctl_dir_obj_clear(&c);
    return rc;
}

static int bookmark_created(api_ctx *x, const ctl_dir_obj *o, const cJSON *j)
{
    return bookmark_protect(x, o, j, 1);
}

static int bookmark_deleting(api_ctx *x, const ctl_dir_obj *o, const cJSON *j)
{
    return bookmark_protect(x, o, j, 0);
}

static const api_kind bookmark_kind = {
    .kind = CTL_KIND_BOOKMARK,
    .noun = "bookmark",
    .plural = "bookmarks",
    .perm_get = CTL_PERM_BOOKMARK_GET,
    .perm_add = CTL_PERM_BOOKMARK_ADD,
    .perm_delete = CTL_PERM_BOOKMARK_REMOVE,
    .create = bookmark_fields,
    .ncreate = sizeof(bookmark_fields) / sizeof(bookmark_fields[0]),
    .parent_kind = CTL_KIND_CHANNEL,
    .parent_field = "channel_id",
    .filters = bookmark_filters,
    .prepare = bookmark_prepare,
    .created = bookmark_created,
    .deleting = bookmark_deleting,
};

/* --- Geofences --- */

static const char *const alert_choices[] = {"enter", "exit", "both", NULL};

static const ctl_field geofence_fields[] = {
    {"name", CTL_F_STRING, true, 1, API_NAME_MAX, NULL, false},
    {"shape", CTL_F_OBJECT, true, 0, 0, NULL, false},
    {"alert_on", CTL_F_STRING, false, 1, 8, alert_choices, false},
    {"dashcam_ids", CTL_F_IDS, false, 0, MEMBERS_MAX, NULL, false},
};

/* A 422 invalid_field that also names the field in the error object, so
 * that a map editor can point at the vertex. */
static int fail_at(api_ctx *x, const char *field, const char *message)
{
    char msg[CTL_GEO_FIELD_MAX + CTL_GEO_MESSAGE_MAX + 16];
    snprintf(msg, sizeof(msg), "field \"%s\" %s", field, message);
    cJSON *out = cJSON_CreateObject(), *e = cJSON_CreateObject();
    if (!out || !e || !cJSON_AddStringToObject(e, "code", "invalid_field") ||
        !cJSON_AddStringToObject(e, "message", msg) ||
        !cJSON_AddStringToObject(e, "field", field)) {
        cJSON_Delete(out), cJSON_Delete(e);
        return -ENOMEM;
    }
    cJSON_AddItemToObject(out, "error", e);
    int rc = ctl_http_resp_json(x->resp, 422, out);
    return rc ? rc : 1;
}

static int geofence_prepare(api_ctx *x, const cJSON *before, cJSON *after, ctl_dir_obj *o,
                            api_keys *keys)
{
    (void)o, (void)keys;
    int rc = check_members(x, before, after);
    if (rc != 0)
        return rc;
    if (!before && !cJSON_GetObjectItemCaseSensitive(after, "alert_on") &&
        !cJSON_AddStringToObject(after, "alert_on", "both"))
        return -ENOMEM;
    if (before && !cJSON_GetObjectItemCaseSensitive(x->body, "shape"))
        return 0; /* stored shapes are normalized already */
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(after, "shape");
    ctl_geo_err e;
    if (ctl_geo_validate(shape, &e) != 0)
        return fail_at(x, e.field, e.message);
    cJSON *norm = ctl_geo_normalize(shape);
    if (!norm)
        return -ENOMEM;
    if (!cJSON_ReplaceItemInObjectCaseSensitive(after, "shape", norm)) {
        cJSON_Delete(norm);
        return -ENOMEM;
    }
    return 0;
}

static const char *const geofence_filters[] = {"name", "alert_on", NULL};

static const api_kind geofence_kind = {
    .kind = CTL_KIND_GEOFENCE,
    .noun = "geofence",
    .plural = "geofences",
    .perm_get = CTL_PERM_GEOFENCE_GET,
    .perm_add = CTL_PERM_GEOFENCE_ADD,
    .perm_modify = CTL_PERM_GEOFENCE_MODIFY,
    .perm_delete = CTL_PERM_GEOFENCE_REMOVE,
    .create = geofence_fields,
    .ncreate = sizeof(geofence_fields) / sizeof(geofence_fields[0]),
    .filters = geofence_filters,
    .prepare = geofence_prepare,
    .decorate = members_decorate,
};

/* --- Events --- */

static const ctl_field event_modify_fields[] = {
    {"acknowledged", CTL_F_BOOL, false, 0, 0, NULL, false},
    {"note", CTL_F_TEXT, false, 0, API_TEXT_MAX, NULL, false},
};

/* Devices create events (controller/devmsg.c); people acknowledge them.
 * Acknowledging records who and when; withdrawing it clears both. */
static int event_prepare(api_ctx *x, const cJSON *before, cJSON *after, ctl_dir_obj *o,
                         api_keys *keys)
{
    (void)o, (void)keys;
    if (!cJSON_GetObjectItemCaseSensitive(x->body, "acknowledged"))
        return 0;
    bool was = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(before, "acknowledged"));
    bool now = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(after, "acknowledged"));
    if (was == now)
        return 0;
    cJSON_DeleteItemFromObjectCaseSensitive(after, "acknowledged_by");
    cJSON_DeleteItemFromObjectCaseSensitive(after, "acknowledged_at");
    if (!now)
        return 0;
    char at[32];
    api_iso_time(ctl_dir_txn_now(x->t), at, sizeof(at));
    if (!cJSON_AddNumberToObject(after, "acknowledged_by", (double)x->c.user) ||
        !cJSON_AddStringToObject(after, "acknowledged_at", at))
        return -ENOMEM;
    return 0;
}

static const char *const event_filters[] = {"event", "severity", NULL};

static bool event_match(api_ctx *x, const cJSON *j);
static int event_check_query(api_ctx *x);

static const api_kind event_kind = {
    .kind = CTL_KIND_EVENT,
    .noun = "event",
    .plural = "events",
    .perm_get = CTL_PERM_EVENT_GET,
    .perm_modify = CTL_PERM_EVENT_MODIFY,
    .modify = event_modify_fields,
    .nmodify = sizeof(event_modify_fields) / sizeof(event_modify_fields[0]),
    .parent_kind = CTL_KIND_RECORDER,
    .parent_field = "recorder_id",
    .filters = event_filters,
    .prepare = event_prepare,
    .check_query = event_check_query,
    .match = event_match,
};

/* The list's own filters: ?acknowledged= and a time range on at_us (the
 * generic list adds ?recorder_id=, ?event= and ?severity=). */
static int event_check_query(api_ctx *x)
{
    const char *ack = ctl_http_req_query(x->req, "acknowledged");
    int64_t from, to;
    if (ack && strcmp(ack, "true") != 0 && strcmp(ack, "false") != 0)
        return api_fail(x, 422, "invalid_field", "query \"acknowledged\" must be true or false");
    return api_query_range(x, &from, &to);
}

static bool event_match(api_ctx *x, const cJSON *j)
{
    const char *ack = ctl_http_req_query(x->req, "acknowledged");
    int64_t from = 0, to = 0, at = api_jint(j, "at_us");
    /* Checked by event_check_query: cannot fail here. */
    const char *fs = ctl_http_req_query(x->req, "from"), *ts = ctl_http_req_query(x->req, "to");
    if (fs)
        api_parse_time(fs, &from);
    if (ts)
        api_parse_time(ts, &to);
    if (ack && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "acknowledged")) !=
                   (strcmp(ack, "true") == 0))
        return false;
    return at >= from && (!ts || at < to);
}

/* --- Drivers --- */

static const ctl_field driver_fields[] = {
    {"name", CTL_F_STRING, true, 1, API_NAME_MAX, NULL, false},
    {"license_number", CTL_F_STRING, false, 1, LICENSE_MAX, NULL, true},
    {"phone", CTL_F_STRING, false, 1, PHONE_MAX, NULL, true},
    {"email", CTL_F_STRING, false, 1, API_EMAIL_MAX, NULL, true},
    {"notes", CTL_F_TEXT, false, 0, API_TEXT_MAX, NULL, true},
};

static int driver_prepare(api_ctx *x, const cJSON *before, cJSON *after, ctl_dir_obj *o,
                          api_keys *keys)
{
    (void)before;
    int rc = api_email_field(x, after, "email");
    if (rc != 0)
        return rc;
    /* Always set: a license removed by a PUT releases its key. */
    keys->set = true;
    const char *lic = api_jstr(after, "license_number");
    if (!lic)
        return 0;
    return unique_in_space(x, o, keys, "driver", lic, "license_taken",
                           "a driver with this license number exists");
}

/* Collects recorders of the space whose "driver_id" is p->match. */
static int collect_driven(void *ud, const ctl_dir_obj *o)
{
    id_page *p = ud;
    p->last = o->id;
    cJSON *j = cJSON_Parse(o->json);
    if (j && (uint64_t)api_jint(j, "driver_id") == p->match)
        p->ids[p->n++] = o->id;
    cJSON_Delete(j);
    return 0;
}

/* A deleted driver drives nothing: its dashcams lose their driver_id. */
static int driver_deleting(api_ctx *x, const ctl_dir_obj *o, const cJSON *j)
{
    (void)j;
    uint64_t after = 0;
    for (;;) {
        id_page p = {.n = 0, .match = o->id};
        size_t n = 0;
        int rc = ctl_dir_list_tenant(x->t, x->c.tenant, CTL_KIND_RECORDER, after, WALK,
                                     collect_driven, &p, &n);
        for (size_t i = 0; rc == 0 && i < p.n; i++) {
            ctl_dir_obj r;
            cJSON *rj;
            if ((rc = api_get_json(x, CTL_KIND_RECORDER, p.ids[i], &r, &rj)) != 0)
                break;
            cJSON_DeleteItemFromObjectCaseSensitive(rj, "driver_id");
            rc = api_put_json(x->t, x->c.actor, &r, rj, NULL, 0);
            cJSON_Delete(rj);
            ctl_dir_obj_clear(&r);
        }
        if (rc != 0 || n < WALK)
            return rc;
        after = p.last;
    }
}

static const char *const driver_filters[] = {"name", "license_number", "email", NULL};

static const api_kind driver_kind = {
    .kind = CTL_KIND_DRIVER,
    .noun = "driver",
    .plural = "drivers",
    .perm_get = CTL_PERM_DRIVER_GET,
    .perm_add = CTL_PERM_DRIVER_CREATE,
    .perm_modify = CTL_PERM_DRIVER_MODIFY,
    .perm_delete = CTL_PERM_DRIVER_REMOVE,
    .create = driver_fields,
    .ncreate = sizeof(driver_fields) / sizeof(driver_fields[0]),
    .filters = driver_filters,
    .prepare = driver_prepare,
    .deleting = driver_deleting,
};

static const ctl_field assign_fields[] = {
    {"driver_id", CTL_F_ID, true, 0, 0, NULL, true},
};

/* PUT /api/v1/dashcams/{id}/driver {"driver_id": id or null}. */
static int h_driver_assign(api_ctx *x)
{
    uint64_t id;
    ctl_dir_obj o = {0}, stored = {0};
    cJSON *j = NULL;
    int rc = api_path_id(x, "id", &id);
    if (rc == 0)
        rc = api_get_json(x, CTL_KIND_RECORDER, id, &o, &j);
    if (rc == 0 && !api_dashcam_kind.visible(j))
        rc = -ENOENT;
    if (rc != 0)
        goto out;
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(x->body, "driver_id");
    cJSON_DeleteItemFromObjectCaseSensitive(j, "driver_id");
    if (cJSON_IsNumber(d)) {
        ctl_dir_obj dr;
        rc = ctl_dir_get_in_tenant(x->t, x->c.tenant, CTL_KIND_DRIVER, (uint64_t)d->valuedouble,
                                   &dr);
        if (rc == -ENOENT) {
            rc = api_fail(x, 422, "invalid_field", "field \"driver_id\": no such driver");
            goto out;
        }
        if (rc != 0)
            goto out;
        ctl_dir_obj_clear(&dr);
        if (!cJSON_AddNumberToObject(j, "driver_id", d->valuedouble)) {
            rc = -ENOMEM;
            goto out;
        }
    }
    if ((rc = api_put_json(x->t, x->c.actor, &o, j, NULL, 0)) != 0 ||
        (rc = ctl_dir_get(x->t, CTL_KIND_RECORDER, id, &stored)) != 0)
        goto out;
    cJSON *out = api_obj_out(&stored);
    if (out && api_dashcam_kind.decorate && (rc = api_dashcam_kind.decorate(x, &stored, out))) {
        cJSON_Delete(out);
        goto out;
    }
    rc = api_answer(x, 200, out);
out:
    cJSON_Delete(j);
    ctl_dir_obj_clear(&o);
    ctl_dir_obj_clear(&stored);
    return rc;
}

/* --- Regional settings --- */

static const char *const units_choices[] = {"metric", "imperial", NULL};
static const char *const date_choices[] = {"YYYY-MM-DD", "DD/MM/YYYY", "MM/DD/YYYY", NULL};
static const char *const time_choices[] = {"24h", "12h", NULL};

static const ctl_field regional_fields[] = {
    {"time_zone", CTL_F_STRING, false, 1, ZONE_MAX, NULL, false},
    {"units", CTL_F_STRING, false, 1, 16, units_choices, false},
    {"date_format", CTL_F_STRING, false, 1, 16, date_choices, false},
    {"time_format", CTL_F_STRING, false, 1, 16, time_choices, false},
};

/* The fields and their defaults, in answer order. */
static const char *const regional_defaults[][2] = {
    {"time_zone", "UTC"},
    {"units", "metric"},
    {"date_format", "YYYY-MM-DD"},
    {"time_format", "24h"},
};
#define NREGIONAL (sizeof(regional_defaults) / sizeof(regional_defaults[0]))

/* An IANA zone the system knows: its name is a relative path of
 * [A-Za-z0-9_/+-] (no '.', so no ".." either) to a TZif file. */
static bool zone_ok(const char *z)
{
    if (strcmp(z, "UTC") == 0)
        return true;
    size_t n = strlen(z);
    if (n == 0 || n > ZONE_MAX || z[0] == '/' || z[n - 1] == '/' || strstr(z, "//"))
        return false;
    for (const char *p = z; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '/' || *p == '+' || *p == '-'))
            return false;
    char path[sizeof(ZONEINFO_DIR) + ZONE_MAX];
    snprintf(path, sizeof(path), "%s%s", ZONEINFO_DIR, z);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return false;
    struct stat st;
    char magic[4];
    bool ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
              read(fd, magic, sizeof(magic)) == (ssize_t)sizeof(magic) &&
              memcmp(magic, "TZif", 4) == 0;
    close(fd);
    return ok;
}

/* The space's settings object: 0 with *o and *j set, -ENOENT if none yet
 * (defaults apply), or -errno. */
static int regional_load(api_ctx *x, char *key, size_t keylen, ctl_dir_obj *o, cJSON **j)
{
    snprintf(key, keylen, "%" PRIu64 ":regional", x->c.tenant);
    int kind;
    uint64_t id;
    int rc = ctl_dir_lookup(x->t, "settings", key, &kind, &id);
    if (rc == 0 && kind != CTL_KIND_SETTINGS)
        rc = -EIO;
    return rc == 0 ? api_get_json(x, CTL_KIND_SETTINGS, id, o, j) : rc;
}

/* The four fields of j, defaults for those it lacks. */
static int regional_answer(api_ctx *x, const cJSON *j)
{
    cJSON *out = cJSON_CreateObject();
    for (size_t i = 0; out && i < NREGIONAL; i++) {
        const char *v = api_jstr(j, regional_defaults[i][0]);
        if (!cJSON_AddStringToObject(out, regional_defaults[i][0], v ? v : regional_defaults[i][1]))
            cJSON_Delete(out), out = NULL;
    }
    return api_answer(x, 200, out);
}

static int h_regional_get(api_ctx *x)
{
    char key[32];
    ctl_dir_obj o;
    cJSON *j = NULL;
    int rc = regional_load(x, key, sizeof(key), &o, &j);
    if (rc == -ENOENT)
        return regional_answer(x, NULL);
    if (rc != 0)
        return rc;
    rc = regional_answer(x, j);
    cJSON_Delete(j);
    ctl_dir_obj_clear(&o);
    return rc;
}

/* PUT changes the fields it is given; the object is made on the first. */
static int h_regional_put(api_ctx *x)
{
    const char *zone = api_jstr(x->body, "time_zone");
    if (zone && !zone_ok(zone))
        return api_fail(x, 422, "invalid_field",
                        "field \"time_zone\" is not a known IANA time zone (Europe/Paris, UTC)");
    char key[32];
    ctl_dir_obj o = {.kind = CTL_KIND_SETTINGS, .tenant = x->c.tenant};
    cJSON *j = NULL;
    int rc = regional_load(x, key, sizeof(key), &o, &j);
    if (rc == -ENOENT) {
        o = (ctl_dir_obj){.kind = CTL_KIND_SETTINGS, .tenant = x->c.tenant};
        rc = (j = cJSON_CreateObject()) ? 0 : -ENOMEM;
    }
    for (size_t i = 0; rc == 0 && i < NREGIONAL; i++) {
        const char *k = regional_defaults[i][0], *v = api_jstr(x->body, k);
        if (!v)
            v = api_jstr(j, k);
        cJSON *s = cJSON_CreateString(v ? v : regional_defaults[i][1]);
        cJSON_DeleteItemFromObjectCaseSensitive(j, k);
        if (!s)
            rc = -ENOMEM;
        else
            cJSON_AddItemToObject(j, k, s);
    }
    ctl_dir_ukey k = {"settings", key};
    if (rc == 0)
        rc = api_put_json(x->t, x->c.actor, &o, j, &k, 1);
    if (rc == 0)
        rc = regional_answer(x, j);
    cJSON_Delete(j);
    ctl_dir_obj_clear(&o);
    return rc;
}

/* --- Map --- */

/* A position for the map: "at", "lat", "lon", "speed_kmh"?, "heading"?
 * of a stored one (controller/devmsg.h), after id_field: id if nonzero. */
static cJSON *map_point(const cJSON *p, const char *id_field, uint64_t id, const char *name)
{
    static const char *const keep[] = {"at", "lat", "lon", "speed_kmh", "heading"};
    cJSON *o = cJSON_CreateObject();
    if (o && id && !cJSON_AddNumberToObject(o, id_field, (double)id))
        goto fail;
    if (o && name && !cJSON_AddStringToObject(o, "name", name))
        goto fail;
    for (size_t i = 0; o && i < sizeof(keep) / sizeof(keep[0]); i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(p, keep[i]);
        cJSON *c = v ? cJSON_Duplicate(v, 1) : NULL;
        if (v && !c)
            goto fail;
        if (c)
            cJSON_AddItemToObject(o, keep[i], c);
    }
    return o;
fail:
    cJSON_Delete(o);
    return NULL;
}

/* GET /api/v1/map/live: the latest position of every dashcam of the space;
 * positions only, no event data (the Map Viewer's view). */
static int h_map_live(api_ctx *x)
{
    cJSON *all = NULL, *items = cJSON_CreateArray();
    int rc = items ? ctl_devmsg_live(x->t, x->c.tenant, &all) : -ENOMEM;
    for (const cJSON *p = all ? all->child : NULL; rc == 0 && p; p = p->next) {
        uint64_t rid = (uint64_t)api_jint(p, "recorder_id");
        ctl_dir_obj r;
        cJSON *rj;
        if ((rc = api_get_json(x, CTL_KIND_RECORDER, rid, &r, &rj)) == -ENOENT) {
            rc = 0;
            continue;
        }
        if (rc != 0)
            break;
        if (api_dashcam_kind.visible(rj)) {
            cJSON *pt = map_point(p, "dashcam_id", rid, api_jstr(rj, "name"));
            if (pt)
                cJSON_AddItemToArray(items, pt);
            else
                rc = -ENOMEM;
        }
        cJSON_Delete(rj);
        ctl_dir_obj_clear(&r);
    }
    cJSON_Delete(all);
    cJSON *out = rc == 0 ? cJSON_CreateObject() : NULL;
    if (rc != 0 || !out) {
        cJSON_Delete(items);
        return rc ? rc : -ENOMEM;
    }
    cJSON_AddItemToObject(out, "items", items);
    return api_answer(x, 200, out);
}

/* GET /api/v1/map/trips?dashcam_id=&from=&to=&after=&limit=: a dashcam's
 * positions, oldest first. The page cursor is a time: next_after is the
 * last position's at_us, and the next page starts after it. */
static int h_map_trips(api_ctx *x)
{
    uint64_t id, after;
    size_t limit;
    int64_t from, to, next = 0;
    const char *ds = ctl_http_req_query(x->req, "dashcam_id");
    if (!ds)
        return api_fail(x, 422, "missing_field", "query \"dashcam_id\" is required");
    if (api_parse_id(ds, &id) != 0)
        return api_fail(x, 422, "invalid_field", "query \"dashcam_id\" must be an id");
    int rc = api_page_args(x, &after, &limit);
    if (rc == 0)
        rc = api_query_range(x, &from, &to);
    if (rc != 0)
        return rc;
    if ((rc = dashcam_exists(x, id)) <= 0)
        return rc < 0 ? rc : -ENOENT;
    if (after && (int64_t)after + 1 > from)
        from = (int64_t)after + 1;
    cJSON *all = NULL, *items = cJSON_CreateArray();
    rc = items ? 0 : -ENOMEM;
    if (rc == 0 && (!to || from < to))
        rc = ctl_devmsg_trip(x->t, x->c.tenant, id, from, to, limit, &all, &next);
    for (const cJSON *p = all ? all->child : NULL; rc == 0 && p; p = p->next) {
        cJSON *pt = map_point(p, NULL, 0, NULL);
        if (pt)
            cJSON_AddItemToArray(items, pt);
        else
            rc = -ENOMEM;
    }
    cJSON_Delete(all);
    if (rc != 0) {
        cJSON_Delete(items);
        return rc;
    }
    return api_answer_page(x, items, next > 0 ? (uint64_t)(next - 1) : 0);
}

/* --- Routes --- */

const api_route api_dashcam_routes[] = {
    API_KIND_ROUTES("/api/v1/groups", &group_kind, CTL_PERM_GROUP_GET, CTL_PERM_GROUP_ADD,
                    CTL_PERM_GROUP_MODIFY, CTL_PERM_GROUP_DELETE),
    {"GET", "/api/v1/bookmarks", CTL_PERM_BOOKMARK_GET, NULL, 0, api_obj_list, &bookmark_kind},
    {"POST", "/api/v1/bookmarks", CTL_PERM_BOOKMARK_ADD, NULL, 0, api_obj_create, &bookmark_kind},
    {"GET", "/api/v1/bookmarks/{id}", CTL_PERM_BOOKMARK_GET, NULL, 0, api_obj_get, &bookmark_kind},
    {"DELETE", "/api/v1/bookmarks/{id}", CTL_PERM_BOOKMARK_REMOVE, NULL, 0, api_obj_delete,
     &bookmark_kind},
    API_KIND_ROUTES("/api/v1/geofences", &geofence_kind, CTL_PERM_GEOFENCE_GET,
                    CTL_PERM_GEOFENCE_ADD, CTL_PERM_GEOFENCE_MODIFY, CTL_PERM_GEOFENCE_REMOVE),
    {"GET", "/api/v1/events", CTL_PERM_EVENT_GET, NULL, 0, api_obj_list, &event_kind},
    {"GET", "/api/v1/events/{id}", CTL_PERM_EVENT_GET, NULL, 0, api_obj_get, &event_kind},
    {"PUT", "/api/v1/events/{id}", CTL_PERM_EVENT_MODIFY, NULL, 0, api_obj_modify, &event_kind},
    API_KIND_ROUTES("/api/v1/drivers", &driver_kind, CTL_PERM_DRIVER_GET, CTL_PERM_DRIVER_CREATE,
                    CTL_PERM_DRIVER_MODIFY, CTL_PERM_DRIVER_REMOVE),
    {"PUT", "/api/v1/dashcams/{id}/driver", CTL_PERM_DRIVER_ASSIGN, F(assign_fields),
     h_driver_assign, NULL},
    {"GET", "/api/v1/settings/regional", CTL_PERM_REGIONAL_SETTINGS_GET, NULL, 0, h_regional_get,
     NULL},
    {"PUT", "/api/v1/settings/regional", CTL_PERM_REGIONAL_SETTINGS_MODIFY, F(regional_fields),
     h_regional_put, NULL},
    {"GET", "/api/v1/map/live", CTL_PERM_MAP_LIVE_LOCATION, NULL, 0, h_map_live, NULL},
    {"GET", "/api/v1/map/trips", CTL_PERM_MAP_TRIP_HISTORY, NULL, 0, h_map_trips, NULL},
};
const size_t api_dashcam_nroutes = sizeof(api_dashcam_routes) / sizeof(api_dashcam_routes[0]);
