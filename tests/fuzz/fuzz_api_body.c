/* The API's request-body checks (controller/reqcheck.c) on arbitrary JSON,
 * against the field table of every route that takes a body. Invariants:
 * an accepted body has only fields of the table, every required one, each
 * of the declared type; a refusal names a code and a printable message. */
#include "controller/api_int.h"
#include "fuzz.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void printable(const char *s)
{
    for (; *s; s++)
        FUZZ_ASSERT((unsigned char)*s >= 0x20 && (unsigned char)*s < 0x7f);
}

static bool of_type(const cJSON *v, const ctl_field *f)
{
    if (f->nullable && cJSON_IsNull(v))
        return true;
    switch (f->type) {
    case CTL_F_STRING:
    case CTL_F_TEXT:
        return cJSON_IsString(v) && strlen(v->valuestring) <= (size_t)f->max &&
               ctl_check_text(v->valuestring, f->type == CTL_F_TEXT);
    case CTL_F_BOOL:
        return cJSON_IsBool(v);
    case CTL_F_INT:
    case CTL_F_NUMBER:
    case CTL_F_ID:
        return cJSON_IsNumber(v) && isfinite(v->valuedouble);
    case CTL_F_OBJECT:
        return cJSON_IsObject(v);
    case CTL_F_ARRAY:
    case CTL_F_STRINGS:
    case CTL_F_IDS:
        return cJSON_IsArray(v) && cJSON_GetArraySize(v) <= (int)f->max;
    }
    return false;
}

static void check_table(const cJSON *body, const ctl_field *f, size_t n)
{
    ctl_check_err e;
    memset(&e, 0, sizeof(e));
    int rc = ctl_check_body(body, f, n, &e);
    FUZZ_ASSERT(rc == 0 || rc == 1);
    if (rc == 1) {
        FUZZ_ASSERT(e.code != NULL);
        FUZZ_ASSERT(strlen(e.message) > 0 && strlen(e.message) < sizeof(e.message));
        printable(e.message);
        return;
    }
    for (const cJSON *it = body ? body->child : NULL; it; it = it->next) {
        size_t i = 0;
        while (i < n && strcmp(f[i].name, it->string) != 0)
            i++;
        FUZZ_ASSERT(i < n);
        FUZZ_ASSERT(of_type(it, &f[i]));
    }
    for (size_t i = 0; i < n; i++)
        if (f[i].required)
            FUZZ_ASSERT(cJSON_GetObjectItemCaseSensitive(body, f[i].name) != NULL);
}

static void check_routes(const cJSON *body, const api_route *r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (r[i].body)
            check_table(body, r[i].body, r[i].nbody);
        if (r[i].kind && r[i].kind->create)
            check_table(body, r[i].kind->create, r[i].kind->ncreate);
        if (r[i].kind && r[i].kind->modify)
            check_table(body, r[i].kind->modify, r[i].kind->nmodify);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    (void)ctl_check_text(text, 0);
    (void)ctl_check_text(text, 1);
    cJSON *body = cJSON_ParseWithLength(text, size);
    free(text);
    if (!body || !cJSON_IsObject(body)) {
        cJSON_Delete(body);
        return 0;
    }
    check_routes(body, api_account_routes, api_account_nroutes);
    check_routes(body, api_space_routes, api_space_nroutes);
    check_routes(body, api_objects_routes, api_objects_nroutes);
    check_routes(body, api_dashcam_routes, api_dashcam_nroutes);
    cJSON_Delete(body);
    return 0;
}
