#include "controller/report.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    FILE *out;
    int json;
    uint64_t n;
    uint64_t total_bytes;
    uint64_t total_segments;
} report_ctx;

/* Adds an integer exactly: cJSON prints large numbers through a double
 * with 15 significant digits ("1.76448e+15"). */
static int add_int(cJSON *o, const char *name, int64_t v)
{
    char buf[24];
    snprintf(buf, sizeof(buf), "%" PRId64, v);
    return cJSON_AddRawToObject(o, name, buf) != NULL;
}

static int add_uint(cJSON *o, const char *name, uint64_t v)
{
    char buf[24];
    snprintf(buf, sizeof(buf), "%" PRIu64, v);
    return cJSON_AddRawToObject(o, name, buf) != NULL;
}

/* Prints one JSON object, unformatted, and frees it. */
static int emit(FILE *out, cJSON *obj, int first)
{
    char *s = obj ? cJSON_PrintUnformatted(obj) : NULL;
    cJSON_Delete(obj);
    if (!s)
        return -ENOMEM;
    fprintf(out, "%s%s", first ? "" : ",", s);
    free(s);
    return 0;
}

static int usage_row(void *ud, const char *device, uint16_t channel, const ctl_usage_rec *rec)
{
    report_ctx *x = ud;
    x->total_bytes += rec->bytes;
    x->total_segments += rec->segments;
    if (!x->json) {
        fprintf(x->out, "%-64s %7u %10" PRIu64 " %16" PRIu64 "\n", device, channel, rec->segments,
                rec->bytes);
        x->n++;
        return 0;
    }
    cJSON *o = cJSON_CreateObject();
    if (o && (!cJSON_AddStringToObject(o, "device", device) || !add_int(o, "channel", channel) ||
              !add_uint(o, "bytes", rec->bytes) || !add_uint(o, "segments", rec->segments))) {
        cJSON_Delete(o);
        o = NULL;
    }
    return emit(x->out, o, x->n++ == 0);
}

int ctl_report_usage(ctl_ledger *l, FILE *out, int json)
{
    report_ctx x = {out, json, 0, 0, 0};
    if (json)
        fputs("{\"cameras\":[", out);
    else
        fprintf(out, "%-64s %7s %10s %16s\n", "DEVICE", "CHANNEL", "SEGMENTS", "BYTES");
    int rc = l ? ctl_ledger_foreach_usage(l, usage_row, &x) : 0;
    if (rc != 0)
        return rc;
    if (json)
        fprintf(out, "],\"total_bytes\":%" PRIu64 "}\n", x.total_bytes);
    else
        fprintf(out, "%-64s %7s %10" PRIu64 " %16" PRIu64 "\n", "total", "", x.total_segments,
                x.total_bytes);
    return fflush(out) == 0 ? 0 : -errno;
}

static int segment_row(void *ud, const ctl_seg_key *key, const ctl_segment_rec *rec)
{
    report_ctx *x = ud;
    if (!x->json) {
        fprintf(x->out, "%-24s %5u %19" PRId64 " %12" PRId64 " %12" PRIu64 " %s %s\n", key->device,
                key->channel, key->start_us, rec->duration_us, rec->size, rec->sha256, rec->path);
        x->n++;
        return 0;
    }
    cJSON *o = cJSON_CreateObject();
    if (o && (!cJSON_AddStringToObject(o, "device", key->device) ||
              !add_int(o, "channel", key->channel) || !add_int(o, "start_us", key->start_us) ||
              !add_int(o, "duration_us", rec->duration_us) || !add_uint(o, "size", rec->size) ||
              !cJSON_AddStringToObject(o, "sha256", rec->sha256) ||
              !cJSON_AddStringToObject(o, "path", rec->path))) {
        cJSON_Delete(o);
        o = NULL;
    }
    return emit(x->out, o, x->n++ == 0);
}

int ctl_report_segments(ctl_ledger *l, FILE *out, int json)
{
    report_ctx x = {out, json, 0, 0, 0};
    if (json)
        fputs("{\"segments\":[", out);
    else
        fprintf(out, "%-24s %5s %19s %12s %12s %-64s %s\n", "DEVICE", "CH", "START_US",
                "DURATION_US", "SIZE", "SHA256", "PATH");
    int rc = l ? ctl_ledger_foreach_segment(l, segment_row, &x) : 0;
    if (rc != 0)
        return rc;
    if (json)
        fputs("]}\n", out);
    return fflush(out) == 0 ? 0 : -errno;
}
