/* Geofence shapes: see geo.h. */
#include "controller/geo.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Bytes of a client's object key shown in an error's field path. */
#define KEY_SHOWN_MAX 32

#define DEG_TO_RAD (3.14159265358979323846 / 180.0)

/* A vertex in CTL_GEO_SCALE units: x is the longitude, y the latitude.
 * |x| <= 1.8e9 and |y| <= 9e8, so a difference of two fits in 33 bits and a
 * product of two differences (<= 3.6e9 * 1.8e9 = 6.5e18) in int64. */
typedef struct {
    int64_t x, y;
} gpt;

typedef enum { SHAPE_CIRCLE, SHAPE_POLYGON } shape_type;

typedef struct {
    shape_type type;
    gpt center;
    double radius_m;
    size_t n;                      /* vertices, closing point dropped */
    gpt pts[CTL_GEO_POLY_MAX + 1]; /* +1: the closing point while parsing */
} shape;

static void fail(ctl_geo_err *err, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(ctl_geo_err *err, const char *field, const char *fmt, ...)
{
    if (!err)
        return;
    snprintf(err->field, sizeof(err->field), "%s", field);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
}

/* path + "." + key, the key cut to KEY_SHOWN_MAX bytes and every byte that
 * is not printable ASCII, '"' or '\\' shown as '?' (geo.h: safe for JSON). */
static void key_path(char *out, size_t outlen, const char *path, const char *key)
{
    char shown[KEY_SHOWN_MAX + 1];
    size_t i = 0;
    for (; key && key[i] && i < KEY_SHOWN_MAX; i++) {
        unsigned char c = (unsigned char)key[i];
        shown[i] = (c < 0x20 || c > 0x7e || c == '"' || c == '\\') ? '?' : (char)c;
    }
    shown[i] = '\0';
    snprintf(out, outlen, "%s.%s", path, shown);
}

/* Checks that obj has exactly the keys of names (at most 8), each once, and
 * puts the values in vals (same order). Returns 0 or 1 (invalid). */
static int take_fields(const cJSON *obj, const char *path, const char *const *names, size_t count,
                       const cJSON **vals, ctl_geo_err *err)
{
    char field[CTL_GEO_FIELD_MAX];
    unsigned seen = 0;
    const cJSON *it;

    cJSON_ArrayForEach(it, obj)
    {
        size_t k = 0;
        while (k < count && !(it->string && strcmp(it->string, names[k]) == 0))
            k++;
        if (k == count) {
            key_path(field, sizeof(field), path, it->string);
            fail(err, field, "unknown field");
            return 1;
        }
        if (seen & (1u << k)) {
            key_path(field, sizeof(field), path, names[k]);
            fail(err, field, "duplicate field");
            return 1;
        }
        seen |= 1u << k;
        vals[k] = it;
    }
    for (size_t k = 0; k < count; k++) {
        if (!(seen & (1u << k))) {
            key_path(field, sizeof(field), path, names[k]);
            fail(err, field, "is required");
            return 1;
        }
    }
    return 0;
}

/* A JSON number in [lo, hi] into *out. Returns 0 or 1 (invalid). */
static int take_number(const cJSON *v, const char *field, double lo, double hi, const char *unit,
                       double *out, ctl_geo_err *err)
{
    if (!cJSON_IsNumber(v)) {
        fail(err, field, "must be a number");
        return 1;
    }
    /* cJSON parses 1e999 as infinity. */
    if (!isfinite(v->valuedouble)) {
        fail(err, field, "must be a finite number");
        return 1;
    }
    if (!(v->valuedouble >= lo && v->valuedouble <= hi)) {
        fail(err, field, "must be between %g and %g%s", lo, hi, unit);
        return 1;
    }
    *out = v->valuedouble;
    return 0;
}

/* {"lat":..,"lon":..} at path into *p, rounded to CTL_GEO_SCALE units. */
static int take_point(const cJSON *obj, const char *path, gpt *p, ctl_geo_err *err)
{
    static const char *const names[] = {"lat", "lon"};
    const cJSON *vals[2];
    char field[CTL_GEO_FIELD_MAX];
    double lat, lon;

    if (!cJSON_IsObject(obj)) {
        fail(err, path, "must be an object");
        return 1;
    }
    if (take_fields(obj, path, names, 2, vals, err))
        return 1;
    snprintf(field, sizeof(field), "%s.lat", path);
    if (take_number(vals[0], field, -90.0, 90.0, "", &lat, err))
        return 1;
    snprintf(field, sizeof(field), "%s.lon", path);
    if (take_number(vals[1], field, -180.0, 180.0, "", &lon, err))
        return 1;
    p->x = (int64_t)llround(lon * CTL_GEO_SCALE);
    p->y = (int64_t)llround(lat * CTL_GEO_SCALE);
    return 0;
}

static int gpt_eq(gpt a, gpt b)
{
    return a.x == b.x && a.y == b.y;
}

/* Sign of the cross product (b - a) x (c - a): 1 left turn, -1 right turn,
 * 0 collinear. Exact: the two products are compared, not subtracted, as
 * their difference could overflow. */
static int orient(gpt a, gpt b, gpt c)
{
    int64_t l = (b.x - a.x) * (c.y - a.y);
    int64_t r = (b.y - a.y) * (c.x - a.x);
    return (l > r) - (l < r);
}

/* p, collinear with a and b, lies on the closed segment ab. */
static int on_segment(gpt a, gpt b, gpt p)
{
    return (a.x <= b.x ? a.x <= p.x && p.x <= b.x : b.x <= p.x && p.x <= a.x) &&
           (a.y <= b.y ? a.y <= p.y && p.y <= b.y : b.y <= p.y && p.y <= a.y);
}

/* The closed segments ab and cd have a point in common. */
static int segments_meet(gpt a, gpt b, gpt c, gpt d)
{
    int o1 = orient(a, b, c), o2 = orient(a, b, d);
    int o3 = orient(c, d, a), o4 = orient(c, d, b);

    if (o1 * o2 < 0 && o3 * o4 < 0)
        return 1;
    return (o1 == 0 && on_segment(a, b, c)) || (o2 == 0 && on_segment(a, b, d)) ||
           (o3 == 0 && on_segment(c, d, a)) || (o4 == 0 && on_segment(c, d, b));
}

/* Adjacent edges ab and bc (a != b, b != c) overlap beyond b: the path
 * turns back on itself. */
static int edges_fold(gpt a, gpt b, gpt c)
{
    return orient(a, b, c) == 0 && (on_segment(a, b, c) || on_segment(b, c, a));
}

/* The polygon rules of geo.h after the points were read. */
static int check_polygon(shape *s, size_t raw, ctl_geo_err *err)
{
    char field[CTL_GEO_FIELD_MAX];
    size_t n = raw;

    for (size_t i = 1; i < raw; i++) {
        if (gpt_eq(s->pts[i], s->pts[i - 1])) {
            snprintf(field, sizeof(field), "shape.points[%zu]", i);
            fail(err, field,
                 "equals the previous point (points closer than 1e-7 degree are equal)");
            return 1;
        }
    }
    /* With no consecutive duplicates, dropping the closing point cannot make
     * the new last point equal the first: it differs from the dropped one. */
    if (n > 1 && gpt_eq(s->pts[n - 1], s->pts[0]))
        n--;
    if (n < CTL_GEO_POLY_MIN) {
        fail(err, "shape.points", "must have at least %d distinct points", CTL_GEO_POLY_MIN);
        return 1;
    }
    if (n > CTL_GEO_POLY_MAX) {
        fail(err, "shape.points", "must have at most %d points (closing point not counted)",
             CTL_GEO_POLY_MAX);
        return 1;
    }
    s->n = n;
    const gpt *p = s->pts;

    for (size_t i = 0; i < n; i++) {
        size_t j = (i + 1) % n;
        int64_t dx = p[j].x - p[i].x;
        if (dx > (int64_t)(180 * CTL_GEO_SCALE) || dx < -(int64_t)(180 * CTL_GEO_SCALE)) {
            snprintf(field, sizeof(field), "shape.points[%zu].lon", j);
            fail(err, field,
                 "edge points[%zu] to points[%zu] crosses the antimeridian (longitudes differ by "
                 "more than 180 degrees): split the geofence at longitude 180",
                 i, j);
            return 1;
        }
    }

    size_t k = 2;
    while (k < n && orient(p[0], p[1], p[k]) == 0)
        k++;
    if (k == n) {
        fail(err, "shape.points", "are all on one line (the polygon has no area)");
        return 1;
    }

    /* Edge i runs from p[i] to p[(i + 1) % n]. O(n^2), bounded by
     * CTL_GEO_POLY_MAX. */
    for (size_t i = 0; i < n; i++) {
        size_t i1 = (i + 1) % n;
        for (size_t j = i + 1; j < n; j++) {
            size_t j1 = (j + 1) % n;
            int bad;
            if (j == i1)
                bad = edges_fold(p[i], p[j], p[j1]);
            else if (j1 == i)
                bad = edges_fold(p[j], p[i], p[i1]);
            else
                bad = segments_meet(p[i], p[i1], p[j], p[j1]);
            if (bad) {
                snprintf(field, sizeof(field), "shape.points[%zu]", j);
                fail(err, field,
                     "edge points[%zu] to points[%zu] crosses, touches or overlaps edge "
                     "points[%zu] to points[%zu] (the polygon must be simple)",
                     i, i1, j, j1);
                return 1;
            }
        }
    }
    return 0;
}

static int parse_circle(const cJSON *obj, shape *s, ctl_geo_err *err)
{
    static const char *const names[] = {"type", "center", "radius_m"};
    const cJSON *vals[3];

    if (take_fields(obj, "shape", names, 3, vals, err))
        return 1;
    if (take_point(vals[1], "shape.center", &s->center, err))
        return 1;
    if (take_number(vals[2], "shape.radius_m", CTL_GEO_RADIUS_MIN_M, CTL_GEO_RADIUS_MAX_M,
                    " metres", &s->radius_m, err))
        return 1;
    s->type = SHAPE_CIRCLE;
    return 0;
}

static int parse_polygon(const cJSON *obj, shape *s, ctl_geo_err *err)
{
    static const char *const names[] = {"type", "points"};
    const cJSON *vals[2], *it;
    char path[CTL_GEO_FIELD_MAX];
    size_t raw = 0;

    if (take_fields(obj, "shape", names, 2, vals, err))
        return 1;
    if (!cJSON_IsArray(vals[1])) {
        fail(err, "shape.points", "must be an array");
        return 1;
    }
    cJSON_ArrayForEach(it, vals[1])
    {
        /* One more than the maximum: room for a closing point. */
        if (raw == CTL_GEO_POLY_MAX + 1) {
            fail(err, "shape.points", "must have at most %d points (closing point not counted)",
                 CTL_GEO_POLY_MAX);
            return 1;
        }
        snprintf(path, sizeof(path), "shape.points[%zu]", raw);
        if (take_point(it, path, &s->pts[raw], err))
            return 1;
        raw++;
    }
    s->type = SHAPE_POLYGON;
    return check_polygon(s, raw, err);
}

static int parse_shape(const cJSON *obj, shape *s, ctl_geo_err *err)
{
    const cJSON *type = NULL, *it;

    if (!cJSON_IsObject(obj)) {
        fail(err, "shape", "must be an object");
        return 1;
    }
    /* The first "type" picks the field list; a second one is refused there. */
    cJSON_ArrayForEach(it, obj)
    {
        if (it->string && strcmp(it->string, "type") == 0) {
            type = it;
            break;
        }
    }
    if (!type) {
        fail(err, "shape.type", "is required");
        return 1;
    }
    if (!cJSON_IsString(type) || !type->valuestring) {
        fail(err, "shape.type", "must be a string");
        return 1;
    }
    if (strcmp(type->valuestring, "circle") == 0)
        return parse_circle(obj, s, err);
    if (strcmp(type->valuestring, "polygon") == 0)
        return parse_polygon(obj, s, err);
    fail(err, "shape.type", "must be circle or polygon");
    return 1;
}

int ctl_geo_validate(const cJSON *shape_json, ctl_geo_err *err)
{
    shape s;
    ctl_geo_err e;

    if (parse_shape(shape_json, &s, &e)) {
        if (err)
            *err = e;
        return 1;
    }
    return 0;
}

/* {"lat":..,"lon":..} of p in degrees. */
static cJSON *point_json(gpt p)
{
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddNumberToObject(o, "lat", (double)p.y / CTL_GEO_SCALE) ||
        !cJSON_AddNumberToObject(o, "lon", (double)p.x / CTL_GEO_SCALE)) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

cJSON *ctl_geo_normalize(const cJSON *shape_json)
{
    shape s;
    cJSON *out = NULL, *item;

    if (parse_shape(shape_json, &s, NULL))
        goto fail;
    out = cJSON_CreateObject();
    if (!out)
        goto fail;
    if (s.type == SHAPE_CIRCLE) {
        if (!cJSON_AddStringToObject(out, "type", "circle"))
            goto fail;
        if (!(item = point_json(s.center)))
            goto fail;
        if (!cJSON_AddItemToObject(out, "center", item)) {
            cJSON_Delete(item);
            goto fail;
        }
        if (!cJSON_AddNumberToObject(out, "radius_m", s.radius_m))
            goto fail;
        return out;
    }
    if (!cJSON_AddStringToObject(out, "type", "polygon"))
        goto fail;
    cJSON *arr = cJSON_AddArrayToObject(out, "points");
    if (!arr)
        goto fail;
    for (size_t i = 0; i < s.n; i++) {
        if (!(item = point_json(s.pts[i])))
            goto fail;
        if (!cJSON_AddItemToArray(arr, item)) {
            cJSON_Delete(item);
            goto fail;
        }
    }
    return out;
fail:
    cJSON_Delete(out);
    return NULL;
}

/* contains() reads what it is given without the full validation: finite
 * numbers are all the arithmetic needs. */
static int get_finite(const cJSON *obj, const char *key, double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return -EINVAL;
    *out = v->valuedouble;
    return 0;
}

static int circle_contains(const cJSON *obj, double lat, double lon)
{
    const cJSON *center = cJSON_GetObjectItemCaseSensitive(obj, "center");
    double clat, clon, r;

    if (!cJSON_IsObject(center) || get_finite(center, "lat", &clat) ||
        get_finite(center, "lon", &clon) || get_finite(obj, "radius_m", &r))
        return -EINVAL;
    /* Haversine: well conditioned for the small distances of a fence. */
    double p1 = clat * DEG_TO_RAD, p2 = lat * DEG_TO_RAD;
    double sdlat = sin((lat - clat) * DEG_TO_RAD / 2), sdlon = sin((lon - clon) * DEG_TO_RAD / 2);
    double h = sdlat * sdlat + cos(p1) * cos(p2) * sdlon * sdlon;
    if (h > 1.0)
        h = 1.0;
    double d = 2.0 * CTL_GEO_EARTH_RADIUS_M * asin(sqrt(h));
    return d <= r;
}

static int polygon_contains(const cJSON *obj, double lat, double lon)
{
    const cJSON *pts = cJSON_GetObjectItemCaseSensitive(obj, "points"), *it;
    double x0 = 0, y0 = 0, xi = 0, yi = 0;
    size_t n = 0;
    int in = 0;

    if (!cJSON_IsArray(pts))
        return -EINVAL;
    /* Even-odd rule, one edge per consecutive pair, then last to first. */
    cJSON_ArrayForEach(it, pts)
    {
        double x, y;
        if (!cJSON_IsObject(it) || get_finite(it, "lat", &y) || get_finite(it, "lon", &x))
            return -EINVAL;
        if (n == 0) {
            x0 = x;
            y0 = y;
        } else if ((yi > lat) != (y > lat) && lon < (x - xi) * (lat - yi) / (y - yi) + xi) {
            in = !in;
        }
        xi = x;
        yi = y;
        n++;
    }
    if (n < CTL_GEO_POLY_MIN)
        return -EINVAL;
    if ((yi > lat) != (y0 > lat) && lon < (x0 - xi) * (lat - yi) / (y0 - yi) + xi)
        in = !in;
    return in;
}

int ctl_geo_contains(const cJSON *normalized, double lat, double lon)
{
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(normalized, "type");

    if (!(lat >= -90.0 && lat <= 90.0 && lon >= -180.0 && lon <= 180.0))
        return -EINVAL;
    if (!cJSON_IsObject(normalized) || !cJSON_IsString(type) || !type->valuestring)
        return -EINVAL;
    if (strcmp(type->valuestring, "circle") == 0)
        return circle_contains(normalized, lat, lon);
    if (strcmp(type->valuestring, "polygon") == 0)
        return polygon_contains(normalized, lat, lon);
    return -EINVAL;
}
