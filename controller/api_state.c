/* Live device state and health alarms (controller/devstate.h) through the
 * API: a recorder's state, and the active alarms of the caller's space.
 * Both read the recorders of the caller's tenant, so a recorder of another
 * space answers 404 as a missing one. Nothing is written. */
#include "controller/api_int.h"
#include "controller/devstate.h"
#include "controller/pairing.h"
#include "proto/c2d_proto.h"

#include <errno.h>
#include <string.h>

static int unavailable(api_ctx *x)
{
    return api_fail(x, 503, "state_unavailable", "this controller keeps no device state");
}

/* The recorder's device id, or NULL if it has none (not paired yet). */
static const char *device_of(const cJSON *rj)
{
    const char *dev = api_jstr(rj, "device_id");
    return dev && c2d_device_id_valid(dev) ? dev : NULL;
}

/* A time, or null for 0. */
static cJSON *time_or_null(cJSON *o, const char *k, int64_t us)
{
    char buf[API_TIME_MAX + 1];
    if (!us)
        return cJSON_AddNullToObject(o, k);
    api_iso_time(us, buf, sizeof(buf));
    return cJSON_AddStringToObject(o, k, buf);
}

/* "pairing": the outcome of the recorder's code from its "_pair", for
 * callers without audit.get (Technicians); never the code or its hash. */
static int add_pairing(api_ctx *x, const cJSON *rj, cJSON *out)
{
    ctl_pair_state st;
    ctl_pair_view v;
    if (ctl_pair_state_get(rj, &st) != 0)
        return -EIO;
    ctl_pair_describe(&st, api_jstr(rj, "device_id") != NULL, ctl_dir_txn_now(x->t), &v);
    cJSON *p = cJSON_AddObjectToObject(out, "pairing");
    return p && cJSON_AddStringToObject(p, "state", ctl_pair_phase_name(v.phase)) &&
                   time_or_null(p, "expires_at", v.expires_us) &&
                   cJSON_AddNumberToObject(p, "wrong_codes", v.wrong_codes) &&
                   time_or_null(p, "locked_until", v.locked_until_us)
               ? 0
               : -ENOMEM;
}

/* GET /api/v1/recorders/{id}/state */
static int get_state(api_ctx *x)
{
    if (!x->api->devstate)
        return unavailable(x);
    uint64_t id;
    int rc = api_path_id(x, "id", &id);
    if (rc != 0)
        return rc;
    ctl_dir_obj o;
    cJSON *rj = NULL, *out = NULL;
    rc = api_get_json(x, CTL_KIND_RECORDER, id, &o, &rj);
    if (rc != 0)
        return rc;
    if (api_recorder_kind.visible && !api_recorder_kind.visible(rj)) {
        rc = -ENOENT;
        goto done;
    }
    const char *dev = device_of(rj);
    if (dev) {
        rc = ctl_devstate_json(x->api->devstate, dev, &out);
    } else if ((out = cJSON_CreateObject())) {
        /* Not paired: nothing can have come from it. */
        cJSON *v;
        rc = cJSON_AddNullToObject(out, "device") && cJSON_AddFalseToObject(out, "online") &&
                     cJSON_AddNullToObject(out, "last_seen") &&
                     cJSON_AddNullToObject(out, "state") &&
                     (v = cJSON_AddObjectToObject(out, "cfg_version")) &&
                     cJSON_AddNullToObject(v, "applied") && cJSON_AddNullToObject(v, "published") &&
                     cJSON_AddNullToObject(out, "rate_limited") &&
                     cJSON_AddArrayToObject(out, "alarms")
                 ? 0
                 : -ENOMEM;
    } else {
        rc = -ENOMEM;
    }
    if (rc == 0 && !cJSON_AddNumberToObject(out, "recorder_id", (double)id))
        rc = -ENOMEM;
    if (rc == 0)
        rc = add_pairing(x, rj, out);
    if (rc == 0) {
        rc = api_answer(x, 200, out);
        out = NULL;
    }
done:
    cJSON_Delete(out);
    cJSON_Delete(rj);
    ctl_dir_obj_clear(&o);
    return rc;
}

typedef struct {
    ctl_devstate *ds;
    cJSON *items;
    uint64_t last;
    int rc;
} alarm_walk;

static int add_recorder_alarms(void *ud, const ctl_dir_obj *obj)
{
    alarm_walk *w = ud;
    w->last = obj->id;
    cJSON *rj = cJSON_Parse(obj->json);
    if (!rj)
        return w->rc = -EIO;
    const char *dev = device_of(rj);
    if (dev && (!api_recorder_kind.visible || api_recorder_kind.visible(rj)))
        w->rc = ctl_devstate_alarms_json(w->ds, dev, obj->id, w->items);
    cJSON_Delete(rj);
    return w->rc;
}

/* GET /api/v1/alarms[?recorder_id=N] */
static int list_alarms(api_ctx *x)
{
    if (!x->api->devstate)
        return unavailable(x);
    alarm_walk w = {.ds = x->api->devstate, .items = cJSON_CreateArray()};
    if (!w.items)
        return -ENOMEM;
    int rc = 0;
    const char *rid = ctl_http_req_query(x->req, "recorder_id");
    if (rid) {
        uint64_t id;
        ctl_dir_obj o;
        cJSON *rj = NULL;
        if (api_parse_id(rid, &id) != 0) {
            cJSON_Delete(w.items);
            return api_fail(x, 422, "invalid_query", "recorder_id: not an id");
        }
        rc = api_get_json(x, CTL_KIND_RECORDER, id, &o, &rj);
        if (rc == 0) {
            rc = add_recorder_alarms(&w, &o);
            cJSON_Delete(rj);
            ctl_dir_obj_clear(&o);
        }
    } else {
        size_t n;
        do {
            n = 0;
            rc = ctl_dir_list_tenant(x->t, x->c.tenant, CTL_KIND_RECORDER, w.last, CTL_DIR_LIST_MAX,
                                     add_recorder_alarms, &w, &n);
        } while (rc == 0 && n == CTL_DIR_LIST_MAX);
    }
    cJSON *out = NULL;
    if (rc == 0 && (out = cJSON_CreateObject()) && cJSON_AddItemToObject(out, "items", w.items))
        return api_answer(x, 200, out);
    cJSON_Delete(out);
    cJSON_Delete(w.items);
    return rc ? rc : -ENOMEM;
}

const api_route api_state_routes[] = {
    {"GET", "/api/v1/recorders/{id}/state", CTL_PERM_DEVICE_GET, NULL, 0, get_state, NULL},
    {"GET", "/api/v1/alarms", CTL_PERM_DEVICE_GET, NULL, 0, list_alarms, NULL},
};
const size_t api_state_nroutes = sizeof(api_state_routes) / sizeof(api_state_routes[0]);
