/* Pairing codes (docs/pairing.md): an installer asks for a one-time code
 * for a recorder; the recorder's agent pairs with it over MQTT
 * (controller/pairing.c). */
#include "controller/api_int.h"
#include "controller/pairing.h"
#include "controller/revoke.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* A device id the controller chooses: "rec-" and 64 random bits in hex,
 * so that it cannot be guessed from the serial (docs/pki.md: client ids
 * are one namespace on the broker). */
static int new_device_id(api_ctx *x, char *out, size_t len)
{
    unsigned char b[8];
    if (ctl_rng_bytes(x->api->rng, b, sizeof(b)) != 0)
        return -EIO;
    size_t n = (size_t)snprintf(out, len, "rec-");
    for (size_t i = 0; i < sizeof(b) && n + 2 < len; i++)
        n += (size_t)snprintf(out + n, len - n, "%02x", b[i]);
    return 0;
}

int ctl_api_set_pairing_listener(ctl_api *a, const char *host, int port)
{
    if (!host || !host[0]) {
        a->pair_host[0] = '\0';
        return 0;
    }
    if (strlen(host) > CTL_API_PAIR_HOST_MAX || port < 1 || port > 65535)
        return -EINVAL;
    snprintf(a->pair_host, sizeof(a->pair_host), "%s", host);
    a->pair_port = port;
    return 0;
}

static int pairing_code(api_ctx *x)
{
    uint64_t id;
    ctl_dir_obj o;
    cJSON *j = NULL;
    int rc = api_path_id(x, "id", &id);
    if (rc != 0)
        return rc;
    if ((rc = api_get_json(x, CTL_KIND_RECORDER, id, &o, &j)) != 0)
        return rc;
    if (!api_recorder_kind.visible(j)) {
        rc = -ENOENT;
        goto out;
    }
    if (!api_jstr(j, "device_id")) {
        /* The certificate is issued for the device id: choose it now, so
         * the installer sees it with the code. */
        char dev[32];
        if ((rc = new_device_id(x, dev, sizeof(dev))) != 0 ||
            (rc = api_recorder_set_device(x, &o, j, dev)) != 0)
            goto out;
        cJSON_Delete(j);
        ctl_dir_obj_clear(&o);
        if ((rc = api_get_json(x, CTL_KIND_RECORDER, id, &o, &j)) != 0)
            return rc;
    }
    const char *serial = api_jstr(j, "serial");
    ctl_pair_state st;
    char code[CTL_PAIR_CODE_SHOWN + 1], expires[API_TIME_MAX + 1];
    if (!serial || ctl_pair_state_get(j, &st) != 0) {
        rc = -EIO;
        goto out;
    }
    if ((rc = ctl_pair_issue(&st, serial, x->api->rng, ctl_dir_txn_now(x->t), code)) != 0 ||
        (rc = ctl_pair_state_put(j, &st)) != 0 ||
        (rc = api_put_json(x->t, NULL, &o, j, NULL, 0)) != 0)
        goto out;
    api_iso_time(st.expires_us, expires, sizeof(expires));
    /* The audit entry says a code was issued and until when, never the code. */
    cJSON *detail = cJSON_CreateObject();
    if (!detail || !cJSON_AddStringToObject(detail, "serial", serial) ||
        !cJSON_AddStringToObject(detail, "expires_at", expires)) {
        cJSON_Delete(detail);
        rc = -ENOMEM;
        goto out;
    }
    rc = ctl_dir_audit_note(x->t, x->c.actor, x->c.tenant, CTL_KIND_RECORDER, id, "pairing_code",
                            detail);
    cJSON_Delete(detail);
    if (rc != 0)
        goto out;
    cJSON *a = cJSON_CreateObject();
    if (!a || !cJSON_AddStringToObject(a, "code", code) ||
        !cJSON_AddStringToObject(a, "serial", serial) ||
        !cJSON_AddStringToObject(a, "device_id", api_jstr(j, "device_id")) ||
        !cJSON_AddStringToObject(a, "expires_at", expires)) {
        cJSON_Delete(a);
        rc = -ENOMEM;
        goto out;
    }
    /* Where the recorder sends it, when configured: the installer then
     * needs no address from elsewhere. */
    cJSON *l;
    if (x->api->pair_host[0] && (!(l = cJSON_AddObjectToObject(a, "pairing")) ||
                                 !cJSON_AddStringToObject(l, "host", x->api->pair_host) ||
                                 !cJSON_AddNumberToObject(l, "port", x->api->pair_port))) {
        cJSON_Delete(a);
        rc = -ENOMEM;
        goto out;
    }
    rc = api_answer(x, 201, a);
out:
    cJSON_Delete(j);
    ctl_dir_obj_clear(&o);
    return rc;
}

/* Unpairing (docs/pairing.md "Unpairing"): the recorder's device id is
 * revoked for good in this transaction (the daemon then denies it at the
 * broker and ignores its messages), the recorder loses it and its code, and
 * the next pairing code gives it a new device id and certificate. */
static int unpair(api_ctx *x)
{
    uint64_t id;
    ctl_dir_obj o;
    cJSON *j = NULL, *detail = NULL;
    int rc = api_path_id(x, "id", &id);
    if (rc != 0)
        return rc;
    if ((rc = api_get_json(x, CTL_KIND_RECORDER, id, &o, &j)) != 0)
        return rc;
    if (!api_recorder_kind.visible(j)) {
        rc = -ENOENT;
        goto out;
    }
    const char *dev = api_jstr(j, "device_id");
    if (!dev) {
        rc = api_fail(x, 409, "not_paired", "this recorder has no device id to revoke");
        goto out;
    }
    char device[C2D_PKI_CN_MAX + 1];
    snprintf(device, sizeof(device), "%s", dev);
    cJSON *after = cJSON_Duplicate(j, 1);
    if (!after) {
        rc = -ENOMEM;
        goto out;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(after, "device_id");
    /* A code still open for the old id is spent; the lockout stays. */
    ctl_pair_state st;
    if (ctl_pair_state_get(after, &st) == 0 && st.hash[0]) {
        st.used = true;
        rc = ctl_pair_state_put(after, &st);
    }
    /* Its unique keys: the serial only, the device key is released. */
    api_keys keys = {.set = true};
    const char *serial = api_jstr(j, "serial");
    if (rc == 0 && serial)
        rc = api_keys_add(&keys, "serial", "%s", serial);
    if (rc == 0)
        rc = api_put_json(x->t, x->c.actor, &o, after, keys.k, keys.n);
    cJSON_Delete(after);
    if (rc == 0)
        rc = ctl_revoke_mark(x->t, device, id);
    if (rc == 0)
        rc = api_recorder_sync(x, id);
    if (rc != 0)
        goto out;
    if (!(detail = cJSON_CreateObject()) || !cJSON_AddStringToObject(detail, "device_id", device)) {
        rc = -ENOMEM;
        goto out;
    }
    if ((rc = ctl_dir_audit_note(x->t, x->c.actor, x->c.tenant, CTL_KIND_RECORDER, id, "unpaired",
                                 detail)) == 0)
        rc = api_answer_stored(x, CTL_KIND_RECORDER, id, 200);
out:
    cJSON_Delete(detail);
    cJSON_Delete(j);
    ctl_dir_obj_clear(&o);
    return rc;
}

const api_route api_pairing_routes[] = {
    {"POST", "/api/v1/recorders/{id}/pairing-code", CTL_PERM_DEVICE_ADD, NULL, 0, pairing_code,
     NULL},
    {"DELETE", "/api/v1/recorders/{id}/pairing", CTL_PERM_DEVICE_MODIFY, NULL, 0, unpair, NULL},
};
const size_t api_pairing_nroutes = sizeof(api_pairing_routes) / sizeof(api_pairing_routes[0]);
