/* Unit tests for controller/geo.c: a table of accepted and refused shapes
 * (each refusal names its field), the polygon limits (500 points, closing
 * point), normalization, and containment in a 100 m circle in Paris, a
 * square and a concave polygon. */
#include "check.h"
#include "controller/geo.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* JSON texts in the table use ' for " to stay readable. */
static cJSON *parse(const char *text)
{
    char *s = strdup(text);
    if (!s)
        abort();
    for (char *p = s; *p; p++)
        if (*p == '\'')
            *p = '"';
    cJSON *j = cJSON_Parse(s);
    free(s);
    if (!j) {
        fprintf(stderr, "bad test JSON: %s\n", text);
        abort();
    }
    return j;
}

/* geo.h: printable ASCII without '"' or '\\'. */
static int json_safe(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e || *s == '"' || *s == '\\')
            return 0;
    return 1;
}

static const char *const accepted[] = {
    "{'type':'circle','center':{'lat':48.853,'lon':2.3499},'radius_m':100}",
    "{'radius_m':1,'center':{'lon':-180,'lat':-90},'type':'circle'}",
    "{'type':'circle','center':{'lat':90,'lon':180},'radius_m':100000}",
    "{'type':'circle','center':{'lat':-0.0,'lon':1e-300},'radius_m':1.5}",
    /* triangle, open and closed */
    "{'type':'polygon','points':[{'lat':0,'lon':0},{'lat':0,'lon':1},{'lat':1,'lon':0}]}",
    "{'type':'polygon','points':[{'lat':0,'lon':0},{'lat':0,'lon':1},{'lat':1,'lon':0},"
    "{'lat':0,'lon':0}]}",
    /* a vertex in the middle of a straight side is fine */
    "{'type':'polygon','points':[{'lat':0,'lon':0},{'lat':0,'lon':1},{'lat':0,'lon':2},"
    "{'lat':1,'lon':2}]}",
    /* concave (a U opening north) */
    "{'type':'polygon','points':[{'lat':0,'lon':0},{'lat':0,'lon':3},{'lat':3,'lon':3},"
    "{'lat':3,'lon':2},{'lat':1,'lon':2},{'lat':1,'lon':1},{'lat':3,'lon':1},{'lat':3,'lon':0}]}",
    /* an edge of exactly 180 degrees of longitude */
    "{'type':'polygon','points':[{'lat':0,'lon':-90},{'lat':0,'lon':90},{'lat':10,'lon':0}]}",
    /* near the antimeridian without crossing it */
    "{'type':'polygon','points':[{'lat':-17,'lon':179},{'lat':-17,'lon':180},"
    "{'lat':-16,'lon':180},{'lat':-16,'lon':179}]}",
};

static const struct {
    const char *json;
    const char *field;
    const char *message; /* a part of it */
} refused[] = {
    {"[]", "shape", "object"},
    {"'circle'", "shape", "object"},
    {"{}", "shape.type", "required"},
    {"{'type':1}", "shape.type", "string"},
    {"{'type':'square'}", "shape.type", "circle or polygon"},
    {"{'type':'Circle','center':{'lat':0,'lon':0},'radius_m':5}", "shape.type", "circle"},
    /* circle */
    {"{'type':'circle','radius_m':5}", "shape.center", "required"},
    {"{'type':'circle','center':{'lat':0,'lon':0}}", "shape.radius_m", "required"},
    {"{'type':'circle','center':'here','radius_m':5}", "shape.center", "object"},
    {"{'type':'circle','center':[0,0],'radius_m':5}", "shape.center", "object"},
    {"{'type':'circle','center':{'lat':'48.85','lon':2},'radius_m':5}", "shape.center.lat",
     "number"},
    {"{'type':'circle','center':{'lat':true,'lon':2},'radius_m':5}", "shape.center.lat", "number"},
    {"{'type':'circle','center':{'lat':null,'lon':2},'radius_m':5}", "shape.center.lat", "number"},
    {"{'type':'circle','center':{'lat':1,'lon':2},'radius_m':'5'}", "shape.radius_m", "number"},
    {"{'type':'circle','center':{'lat':1e999,'lon':2},'radius_m':5}", "shape.center.lat", "finite"},
    {"{'type':'circle','center':{'lat':1,'lon':-1e999},'radius_m':5}", "shape.center.lon",
     "finite"},
    {"{'type':'circle','center':{'lat':90.0001,'lon':2},'radius_m':5}", "shape.center.lat",
     "between -90 and 90"},
    {"{'type':'circle','center':{'lat':0,'lon':-180.5},'radius_m':5}", "shape.center.lon",
     "between -180 and 180"},
    {"{'type':'circle','center':{'lat':0,'lon':0},'radius_m':0.99}", "shape.radius_m",
     "between 1 and 100000 metres"},
    {"{'type':'circle','center':{'lat':0,'lon':0},'radius_m':100000.01}", "shape.radius_m",
     "between"},
    {"{'type':'circle','center':{'lat':0,'lon':0},'radius_m':-5}", "shape.radius_m", "between"},
    {"{'type':'circle','center':{'lat':0},'radius_m':5}", "shape.center.lon", "required"},
    {"{'type':'circle','center':{'lat':0,'lon':0,'alt':3},'radius_m':5}", "shape.center.alt",
     "unknown"},
    {"{'type':'circle','center':{'lat':0,'lon':0},'radius_m':5,'color':'red'}", "shape.color",
     "unknown"},
    {"{'type':'circle','center':{'lat':0,'lon':0},'radius_m':5,'points':[]}", "shape.points",
     "unknown"},
    {"{'type':'circle','center':{'lat':0,'lon':0},'radius_m':5,'Type':'circle'}", "shape.Type",
     "unknown"},
    {"{'type':'circle','center':{'lat':0,'lon':0},'radius_m':5,'type':'polygon'}", "shape.type",
     "duplicate"},
    {"{'type':'circle','center':{'lat':0,'lat':1,'lon':0},'radius_m':5}", "shape.center.lat",
     "duplicate"},
    /* a key that is not safe in JSON is shown with '?' */
    {"{'type':'circle','center':{'lat':0,'lon':0},'radius_m':5,'a\\'b\\\\c\\n\\u00e9':1}",
     "shape.a?b?c???", "unknown"},
    {"{'type':'circle','center':{'lat':0,'lon':0},'radius_m':5,"
     "'0123456789012345678901234567890123456789':1}",
     "shape.01234567890123456789012345678901", "unknown"},
    /* polygon: structure */
    {"{'type':'polygon'}", "shape.points", "required"},
    {"{'type':'polygon','points':{}}", "shape.points", "array"},
    {"{'type':'polygon','points':[]}", "shape.points", "at least 3"},
    {"{'type':'polygon','points':[{'lat':0,'lon':0},{'lat':1,'lon':1}]}", "shape.points",
     "at least 3"},
    {"{'type':'polygon','points':[{'lat':0,'lon':0},[1,1],{'lat':1,'lon':0}]}", "shape.points[1]",
     "object"},
    {"{'type':'polygon','points':[{'lat':0,'lon':0},{'lat':0,'lon':1},{'lat':1}]}",
     "shape.points[2].lon", "required"},
    {"{'type':'polygon','points':[{'lat':0,'lon':0,'alt':1},{'lat':0,'lon':1},{'lat':1,'lon':0}]}",
     "shape.points[0].alt", "unknown"},
    {"{'type':'polygon','points':[{'lat':0,'lon':0},{'lat':0,'lon':1},{'lat':1,'lon':0},"
     "{'lat':-91,'lon':0}]}",
     "shape.points[3].lat", "between"},
    {"{'type':'polygon','points':[{'lat':0,'lon':0},{'lat':0,'lon':1},{'lat':1,'lon':false}]}",
     "shape.points[2].lon", "number"},
    {"{'type':'polygon','points':[{'lat':0,'lon':0},{'lat':0,'lon':1},{'lat':1,'lon':0}],"
     "'center':{'lat':0,'lon':0}}",
     "shape.center", "unknown"},
    /* duplicated consecutive point, also closer than 1e-7 degree */
    {"{'type':'polygon','points':[{'lat':0,'lon':0},{'lat':0,'lon':1},{'lat':0,'lon':1},"
     "{'lat':1,'lon':0}]}",
     "shape.points[2]", "equals the previous point"},
    {"{'type':'polygon','points':[{'lat':0,'lon':0},{'lat':0,'lon':1},"
     "{'lat':0.00000001,'lon':1.00000003},{'lat':1,'lon':0}]}",
     "shape.points[2]", "equals the previous point"},
    /* closed twice */
    {"{'type':'polygon','points':[{'lat':0,'lon':0},{'lat':0,'lon':1},{'lat':1,'lon':0},"
     "{'lat':0,'lon':0},{'lat':0,'lon':0}]}",
     "shape.points[4]", "equals the previous point"},
    /* a closed "triangle" of two distinct points */
    {"{'type':'polygon','points':[{'lat':0,'lon':0},{'lat':0,'lon':1},{'lat':0,'lon':0}]}",
     "shape.points", "at least 3"},
    /* collinear */
    {"{'type':'polygon','points':[{'lat':0,'lon':0},{'lat':1,'lon':1},{'lat':2,'lon':2},"
     "{'lat':3,'lon':3}]}",
     "shape.points", "one line"},
    {"{'type':'polygon','points':[{'lat':0,'lon':0},{'lat':0,'lon':2},{'lat':0,'lon':1}]}",
     "shape.points", "one line"},
    /* bow-tie: edge 1 (0,1)-(1,0) crosses edge 3 (1,1)-(0,0) */
    {"{'type':'polygon','points':[{'lat':0,'lon':0},{'lat':0,'lon':1},{'lat':1,'lon':0},"
     "{'lat':1,'lon':1}]}",
     "shape.points[3]", "simple"},
    /* a spike: the path goes back along itself */
    {"{'type':'polygon','points':[{'lat':0,'lon':0},{'lat':0,'lon':2},{'lat':0,'lon':1},"
     "{'lat':1,'lon':1}]}",
     "shape.points[1]", "simple"},
    /* a vertex touching a non-adjacent edge: (0,3) lies on edge 0 */
    {"{'type':'polygon','points':[{'lat':0,'lon':0},{'lat':0,'lon':6},{'lat':6,'lon':6},"
     "{'lat':0,'lon':3},{'lat':6,'lon':0}]}",
     "shape.points[2]", "simple"},
    /* a vertex visited twice */
    {"{'type':'polygon','points':[{'lat':0,'lon':0},{'lat':0,'lon':2},{'lat':1,'lon':1},"
     "{'lat':2,'lon':2},{'lat':2,'lon':0},{'lat':1,'lon':1}]}",
     "shape.points[4]", "simple"},
    /* non-adjacent collinear edges that overlap: (0,3)-(0,1) over edge 0 */
    {"{'type':'polygon','points':[{'lat':0,'lon':0},{'lat':0,'lon':4},{'lat':2,'lon':4},"
     "{'lat':2,'lon':3},{'lat':0,'lon':3},{'lat':0,'lon':1},{'lat':2,'lon':1},{'lat':2,'lon':0}]}",
     "shape.points[3]", "simple"},
    /* antimeridian, inside the list and on the closing edge */
    {"{'type':'polygon','points':[{'lat':0,'lon':170},{'lat':10,'lon':-170},{'lat':-10,'lon':175}]"
     "}",
     "shape.points[1].lon", "antimeridian"},
    {"{'type':'polygon','points':[{'lat':0,'lon':-179},{'lat':0,'lon':0},{'lat':1,'lon':0.5},"
     "{'lat':1,'lon':179.5}]}",
     "shape.points[0].lon", "antimeridian"},
};

#define N_ACCEPTED (sizeof(accepted) / sizeof(accepted[0]))
#define N_REFUSED (sizeof(refused) / sizeof(refused[0]))

static void test_table(void)
{
    for (size_t i = 0; i < N_ACCEPTED; i++) {
        cJSON *j = parse(accepted[i]);
        ctl_geo_err err = {"untouched", "untouched"};
        int rc = ctl_geo_validate(j, &err);
        if (rc != 0)
            fprintf(stderr, "accepted[%zu] refused: %s %s\n", i, err.field, err.message);
        CHECK(rc == 0);
        CHECK(strcmp(err.field, "untouched") == 0 && strcmp(err.message, "untouched") == 0);
        CHECK(ctl_geo_validate(j, NULL) == 0);
        /* The canonical copy is valid, and its own canonical copy. */
        cJSON *n = ctl_geo_normalize(j);
        CHECK(n != NULL);
        CHECK(ctl_geo_validate(n, NULL) == 0);
        cJSON *n2 = ctl_geo_normalize(n);
        CHECK(n2 != NULL && cJSON_Compare(n, n2, 1));
        cJSON_Delete(n2);
        cJSON_Delete(n);
        cJSON_Delete(j);
    }
    for (size_t i = 0; i < N_REFUSED; i++) {
        cJSON *j = parse(refused[i].json);
        ctl_geo_err err;
        memset(&err, 0, sizeof(err));
        int rc = ctl_geo_validate(j, &err);
        int ok = rc == 1 && strcmp(err.field, refused[i].field) == 0 &&
                 strstr(err.message, refused[i].message) != NULL;
        if (!ok)
            fprintf(stderr, "refused[%zu]: rc %d field %s message %s\n", i, rc, err.field,
                    err.message);
        CHECK(ok);
        CHECK(json_safe(err.field) && json_safe(err.message));
        CHECK(ctl_geo_validate(j, NULL) == 1);
        CHECK(ctl_geo_normalize(j) == NULL);
        cJSON_Delete(j);
    }
    ctl_geo_err err;
    CHECK(ctl_geo_validate(NULL, &err) == 1 && strcmp(err.field, "shape") == 0);
    CHECK(ctl_geo_normalize(NULL) == NULL);
}

/* A regular polygon of count points (plus the closing point if closed)
 * around (lat, lon), radius r degrees. */
static cJSON *ngon(int count, int closed, double lat, double lon, double r)
{
    cJSON *shape = cJSON_CreateObject();
    cJSON_AddStringToObject(shape, "type", "polygon");
    cJSON *pts = cJSON_AddArrayToObject(shape, "points");
    for (int i = 0; i < count + (closed ? 1 : 0); i++) {
        double a = 2 * 3.14159265358979323846 * (i % count) / count;
        cJSON *p = cJSON_CreateObject();
        cJSON_AddNumberToObject(p, "lat", lat + r * sin(a));
        cJSON_AddNumberToObject(p, "lon", lon + r * cos(a));
        cJSON_AddItemToArray(pts, p);
    }
    return shape;
}

static void test_limits(void)
{
    ctl_geo_err err;
    cJSON *j = ngon(500, 0, 48.853, 2.3499, 0.1);
    CHECK(ctl_geo_validate(j, &err) == 0);
    cJSON_Delete(j);

    j = ngon(500, 1, 48.853, 2.3499, 0.1);
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(j, "points")) == 501);
    CHECK(ctl_geo_validate(j, &err) == 0);
    cJSON *n = ctl_geo_normalize(j);
    CHECK(n && cJSON_GetArraySize(cJSON_GetObjectItem(n, "points")) == 500);
    cJSON_Delete(n);
    cJSON_Delete(j);

    j = ngon(501, 0, 48.853, 2.3499, 0.1);
    CHECK(ctl_geo_validate(j, &err) == 1);
    CHECK(strcmp(err.field, "shape.points") == 0 && strstr(err.message, "at most 500"));
    cJSON_Delete(j);

    j = ngon(600, 1, 48.853, 2.3499, 0.1);
    CHECK(ctl_geo_validate(j, &err) == 1);
    CHECK(strcmp(err.field, "shape.points") == 0 && strstr(err.message, "at most 500"));
    cJSON_Delete(j);
}

static void test_normalize(void)
{
    cJSON *j = parse("{'radius_m':100.25,'center':{'lon':2.34990004,'lat':48.85300006},"
                     "'type':'circle'}");
    cJSON *n = ctl_geo_normalize(j);
    char *s = n ? cJSON_PrintUnformatted(n) : NULL;
    CHECK(s && strcmp(s, "{\"type\":\"circle\",\"center\":{\"lat\":48.8530001,\"lon\":2.3499},"
                         "\"radius_m\":100.25}") == 0);
    if (s)
        printf("normalized circle: %s\n", s);
    free(s);
    cJSON_Delete(n);
    cJSON_Delete(j);

    j = parse("{'points':[{'lon':0,'lat':0},{'lon':1,'lat':-0.0},{'lat':1,'lon':1},"
              "{'lat':1,'lon':0},{'lat':0,'lon':0}],'type':'polygon'}");
    n = ctl_geo_normalize(j);
    s = n ? cJSON_PrintUnformatted(n) : NULL;
    CHECK(s &&
          strcmp(s, "{\"type\":\"polygon\",\"points\":[{\"lat\":0,\"lon\":0},"
                    "{\"lat\":0,\"lon\":1},{\"lat\":1,\"lon\":1},{\"lat\":1,\"lon\":0}]}") == 0);
    if (s)
        printf("normalized polygon: %s\n", s);
    free(s);
    cJSON_Delete(n);
    cJSON_Delete(j);
}

static int contains(const char *json, double lat, double lon)
{
    cJSON *j = parse(json);
    cJSON *n = ctl_geo_normalize(j);
    int rc = n ? ctl_geo_contains(n, lat, lon) : -1000;
    cJSON_Delete(n);
    cJSON_Delete(j);
    return rc;
}

static void test_contains(void)
{
    /* 100 m around the Notre-Dame square: 1e-3 degree of latitude is about
     * 111 m, of longitude there about 73 m. */
    const char *paris = "{'type':'circle','center':{'lat':48.853,'lon':2.3499},'radius_m':100}";
    CHECK(contains(paris, 48.853, 2.3499) == 1);
    CHECK(contains(paris, 48.8535, 2.3499) == 1);   /* 56 m north */
    CHECK(contains(paris, 48.8538, 2.3499) == 1);   /* 89 m north */
    CHECK(contains(paris, 48.8540, 2.3499) == 0);   /* 111 m north */
    CHECK(contains(paris, 48.853, 2.3512) == 1);    /* 95 m east */
    CHECK(contains(paris, 48.853, 2.3515) == 0);    /* 117 m east */
    CHECK(contains(paris, 48.8524, 2.3492) == 1);   /* 84 m south-west */
    CHECK(contains(paris, 48.8523, 2.3489) == 0);   /* 107 m south-west */
    CHECK(contains(paris, -48.853, 2.3499) == 0);   /* the antipodes of sorts */
    CHECK(contains(paris, 48.853, -177.6501) == 0); /* the other side of the pole */

    const char *square = "{'type':'polygon','points':[{'lat':0,'lon':0},{'lat':0,'lon':1},"
                         "{'lat':1,'lon':1},{'lat':1,'lon':0}]}";
    CHECK(contains(square, 0.5, 0.5) == 1);
    CHECK(contains(square, 0.99, 0.01) == 1);
    CHECK(contains(square, 1.5, 0.5) == 0);
    CHECK(contains(square, 0.5, -0.5) == 0);
    CHECK(contains(square, -0.5, 1.5) == 0);

    /* the U of the accepted table: the notch (lat 1..3, lon 1..2) is out */
    const char *u = "{'type':'polygon','points':[{'lat':0,'lon':0},{'lat':0,'lon':3},"
                    "{'lat':3,'lon':3},{'lat':3,'lon':2},{'lat':1,'lon':2},{'lat':1,'lon':1},"
                    "{'lat':3,'lon':1},{'lat':3,'lon':0}]}";
    CHECK(contains(u, 0.5, 1.5) == 1);
    CHECK(contains(u, 2, 0.5) == 1);
    CHECK(contains(u, 2, 2.5) == 1);
    CHECK(contains(u, 2, 1.5) == 0);
    CHECK(contains(u, 2.9, 1.5) == 0);
    CHECK(contains(u, 3.5, 0.5) == 0);
    CHECK(contains(u, 1, -1) == 0); /* the ray passes through vertices */

    /* bad arguments and shapes */
    cJSON *j = parse(square), *n = ctl_geo_normalize(j);
    CHECK(ctl_geo_contains(n, NAN, 0) == -EINVAL);
    CHECK(ctl_geo_contains(n, 0, INFINITY) == -EINVAL);
    CHECK(ctl_geo_contains(n, 91, 0) == -EINVAL);
    CHECK(ctl_geo_contains(n, 0, -181) == -EINVAL);
    cJSON_Delete(n);
    cJSON_Delete(j);
    CHECK(ctl_geo_contains(NULL, 0, 0) == -EINVAL);
    const char *bad[] = {
        "[]",
        "{'type':'blob'}",
        "{'type':'circle','center':{'lat':0,'lon':0}}",
        "{'type':'circle','center':{'lat':'0','lon':0},'radius_m':5}",
        "{'type':'polygon','points':[{'lat':0,'lon':0},{'lat':0,'lon':1}]}",
        "{'type':'polygon','points':[{'lat':0,'lon':0},{'lat':0,'lon':1},{'lat':1}]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        j = parse(bad[i]);
        CHECK(ctl_geo_contains(j, 0, 0) == -EINVAL);
        cJSON_Delete(j);
    }
}

int main(void)
{
    test_table();
    test_limits();
    test_normalize();
    test_contains();
    if (failures) {
        fprintf(stderr, "test_geo: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_geo: ok\n");
    return 0;
}
