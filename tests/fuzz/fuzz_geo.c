/* controller/geo.c on arbitrary bytes: the input is parsed as JSON and the
 * value validated as a geofence shape. Invariants: the result is 0 or 1; a
 * refusal names a field under "shape" and gives a message, both JSON-safe
 * (geo.h); a valid shape normalizes, and the canonical copy is valid, is its
 * own canonical copy, prints to at most CANONICAL_TEXT_MAX bytes, and
 * ctl_geo_contains answers 0 or 1 for points in range (its center or first
 * vertex, a few fixed points) and -EINVAL out of range. An invalid shape
 * does not normalize. */
#include "controller/geo.h"
#include "fuzz.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* 500 points of {"lat":-89.1234567,"lon":-179.1234567} and a bit. */
#define CANONICAL_TEXT_MAX (CTL_GEO_POLY_MAX * 48 + 64)

/* Polygons of 500 points make JSON of ~20 KiB; more only slows the fuzzer. */
#define GEO_INPUT_MAX (64u * 1024)

static int json_safe(const char *s, size_t max)
{
    size_t n = 0;
    for (; n < max && s[n]; n++)
        if ((unsigned char)s[n] < 0x20 || (unsigned char)s[n] > 0x7e || s[n] == '"' || s[n] == '\\')
            return 0;
    return n < max;
}

static void check_contains(const cJSON *n, double lat, double lon)
{
    int in = ctl_geo_contains(n, lat, lon);
    FUZZ_ASSERT(in == 0 || in == 1);
}

static void check_valid(const cJSON *shape)
{
    cJSON *n = ctl_geo_normalize(shape);
    FUZZ_ASSERT(n != NULL);
    ctl_geo_err err;
    FUZZ_ASSERT(ctl_geo_validate(n, &err) == 0);
    cJSON *n2 = ctl_geo_normalize(n);
    FUZZ_ASSERT(n2 != NULL && cJSON_Compare(n, n2, 1));
    cJSON_Delete(n2);

    char *text = cJSON_PrintUnformatted(n);
    FUZZ_ASSERT(text != NULL && strlen(text) <= CANONICAL_TEXT_MAX);
    /* What the API stores comes back through the parser. */
    cJSON *back = cJSON_Parse(text);
    free(text);
    FUZZ_ASSERT(back != NULL && ctl_geo_validate(back, NULL) == 0);
    cJSON_Delete(back);

    const cJSON *center = cJSON_GetObjectItemCaseSensitive(n, "center");
    const cJSON *pts = cJSON_GetObjectItemCaseSensitive(n, "points");
    const cJSON *p = center ? center : cJSON_GetArrayItem(pts, 0);
    FUZZ_ASSERT(p != NULL);
    double lat = cJSON_GetObjectItemCaseSensitive(p, "lat")->valuedouble;
    double lon = cJSON_GetObjectItemCaseSensitive(p, "lon")->valuedouble;
    /* A circle holds its center. */
    if (center)
        FUZZ_ASSERT(ctl_geo_contains(n, lat, lon) == 1);
    check_contains(n, lat, lon);
    check_contains(n, 0, 0);
    check_contains(n, 90, 180);
    check_contains(n, -90, -180);
    check_contains(n, lat / 2, lon / 3);
    FUZZ_ASSERT(ctl_geo_contains(n, 90.5, 0) == -EINVAL);
    cJSON_Delete(n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > GEO_INPUT_MAX)
        return 0;
    cJSON *shape = cJSON_ParseWithLength((const char *)data, size);
    ctl_geo_err err;
    memset(&err, 0xff, sizeof(err));
    int rc = ctl_geo_validate(shape, &err);
    FUZZ_ASSERT(rc == 0 || rc == 1);
    if (rc == 0) {
        check_valid(shape);
    } else {
        FUZZ_ASSERT(json_safe(err.field, sizeof(err.field)));
        FUZZ_ASSERT(json_safe(err.message, sizeof(err.message)) && err.message[0]);
        FUZZ_ASSERT(strncmp(err.field, "shape", 5) == 0);
        FUZZ_ASSERT(ctl_geo_normalize(shape) == NULL);
        /* contains() does not crash on what validation refused. */
        int in = ctl_geo_contains(shape, 1, 1);
        FUZZ_ASSERT(in == 0 || in == 1 || in == -EINVAL);
    }
    cJSON_Delete(shape);
    return 0;
}
