/* The controller's HTTP/JSON API server: see http.h. */
#include "controller/http.h"

#include "proto/c2d_proto.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/* Bytes of an error message kept (see ctl_http_resp_error). */
#define ERR_MESSAGE_MAX 512

/* Bytes of the Allow header: every method of the table, comma separated. */
#define ALLOW_MAX 256

/* Bytes of a Content-Type a handler sets ("application/vnd.apple.mpegurl"). */
#define CTYPE_MAX 64

typedef struct {
    char *method;
    char *buf; /* the pattern, split in place into seg[] */
    size_t nseg;
    const char *seg[CTL_HTTP_SEGMENTS_MAX];
    bool param[CTL_HTTP_SEGMENTS_MAX]; /* seg[i] is a parameter name */
    ctl_http_handler fn;
    void *ud;
} route;

struct ctl_http {
    char *address;
    uint16_t cfg_port;
    size_t body_max;
    unsigned conn_max, timeout_s, threads;
    struct sockaddr_storage sa;
    route *routes;
    size_t nroutes;
    struct MHD_Daemon *d;
    uint16_t port;
};

struct ctl_http_resp {
    bool set;
    unsigned status;
    char *body; /* cJSON_PrintUnformatted output (cJSON's allocator) or NULL */
    size_t nh;
    char *hname[CTL_HTTP_RESP_HEADERS_MAX], *hval[CTL_HTTP_RESP_HEADERS_MAX];
    /* ctl_http_resp_bytes / _fd: the body and its type instead of JSON. */
    char ctype[CTYPE_MAX];
    char *bin; /* malloc'd bytes */
    size_t blen;
    bool has_fd;
    int fd;
    uint64_t fd_size;
};

struct ctl_http_req {
    ctl_http *h;
    struct MHD_Connection *conn;
    char *raw;     /* the request target as sent; NULL when too long */
    bool too_long; /* raw was over CTL_HTTP_URL_MAX */
    bool started;  /* the first access-handler call (headers) was seen */
    bool answered; /* a response was queued before the body was read */
    bool body_expected;
    bool too_large;   /* the body grew past body_max: being discarded */
    size_t discarded; /* bytes of it discarded so far */
    uintptr_t raw_at; /* where MHD's buffer held the target (see precheck) */
    const char *method;
    const char *version;
    char *path;   /* decoded segments joined with '/' */
    char *segbuf; /* decoded segments, each NUL-terminated */
    size_t nseg;
    const char *seg[CTL_HTTP_SEGMENTS_MAX];
    const route *route;
    char *body;
    size_t len, cap;
    cJSON *json;
};

/* --- Small helpers --- */

/* True if JSON text holds the escape \u0000: cJSON would end the string
 * there and silently drop the rest, so such bodies are refused. Outside
 * strings a valid JSON text has no backslash, so every backslash met here
 * starts an escape. */
static bool has_nul_escape(const char *s, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++) {
        if (s[i] != '\\')
            continue;
        if (s[i + 1] == 'u' && i + 5 < n && memcmp(s + i + 2, "0000", 4) == 0)
            return true;
        i++; /* skip the escaped character */
    }
    return false;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool valid_status(unsigned status)
{
    return status >= 100 && status <= 599;
}

/* Drops the body set so far (a file is closed). */
static void resp_body_reset(ctl_http_resp *r)
{
    cJSON_free(r->body);
    r->body = NULL;
    free(r->bin);
    r->bin = NULL;
    r->blen = 0;
    if (r->has_fd)
        close(r->fd);
    r->has_fd = false;
    r->fd_size = 0;
    r->ctype[0] = '\0';
}

/* Makes resp an answer of status with no body yet (the old one dropped). */
static void resp_start(ctl_http_resp *r, unsigned status)
{
    resp_body_reset(r);
    r->status = status;
    r->set = true;
}

static void resp_clear(ctl_http_resp *r)
{
    resp_body_reset(r);
    for (size_t i = 0; i < r->nh; i++) {
        free(r->hname[i]);
        free(r->hval[i]);
    }
    memset(r, 0, sizeof(*r));
}

/* --- Server lifecycle and routes --- */

int ctl_http_new(const ctl_http_config *cfg, ctl_http **out)
{
    static const ctl_http_config defaults = {0};
    if (!cfg)
        cfg = &defaults;
    const char *addr = cfg->address ? cfg->address : "127.0.0.1";
    ctl_http *h = calloc(1, sizeof(*h));
    if (!h)
        return -ENOMEM;
    struct sockaddr_in *v4 = (struct sockaddr_in *)&h->sa;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&h->sa;
    if (inet_pton(AF_INET, addr, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(cfg->port);
    } else if (inet_pton(AF_INET6, addr, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(cfg->port);
    } else {
        free(h);
        return -EINVAL;
    }
    h->address = strdup(addr);
    if (!h->address) {
        free(h);
        return -ENOMEM;
    }
    h->cfg_port = cfg->port;
    h->body_max = cfg->body_max ? cfg->body_max : CTL_HTTP_BODY_MAX_DEFAULT;
    h->conn_max = cfg->conn_max ? cfg->conn_max : CTL_HTTP_CONN_MAX_DEFAULT;
    h->timeout_s = cfg->timeout_s ? cfg->timeout_s : CTL_HTTP_TIMEOUT_DEFAULT;
    h->threads = cfg->threads;
    *out = h;
    return 0;
}

void ctl_http_free(ctl_http *h)
{
    if (!h)
        return;
    if (h->d)
        MHD_stop_daemon(h->d);
    for (size_t i = 0; i < h->nroutes; i++) {
        free(h->routes[i].method);
        free(h->routes[i].buf);
    }
    free(h->routes);
    free(h->address);
    free(h);
}

int ctl_http_route(ctl_http *h, const char *method, const char *pattern, ctl_http_handler fn,
                   void *ud)
{
    if (!method || !*method || !pattern || pattern[0] != '/' || !fn)
        return -EINVAL;
    if (h->d)
        return -EBUSY;
    if (h->nroutes >= CTL_HTTP_ROUTES_MAX)
        return -ENOSPC;
    route r = {.fn = fn, .ud = ud};
    r.method = strdup(method);
    r.buf = strdup(pattern + 1);
    if (!r.method || !r.buf)
        goto nomem;
    if (r.buf[0]) {
        char *p = r.buf;
        for (;;) {
            char *slash = strchr(p, '/');
            if (slash)
                *slash = '\0';
            size_t n = strlen(p);
            if (n == 0 || r.nseg >= CTL_HTTP_SEGMENTS_MAX)
                goto inval;
            if (p[0] == '{') {
                if (n < 3 || p[n - 1] != '}' || memchr(p + 1, '{', n - 2) ||
                    memchr(p + 1, '}', n - 2))
                    goto inval;
                p[n - 1] = '\0';
                r.param[r.nseg] = true;
                r.seg[r.nseg++] = p + 1;
            } else {
                if (strchr(p, '{') || strchr(p, '}'))
                    goto inval;
                r.seg[r.nseg++] = p;
            }
            if (!slash)
                break;
            p = slash + 1;
        }
    }
    route *nr = realloc(h->routes, (h->nroutes + 1) * sizeof(*nr));
    if (!nr)
        goto nomem;
    h->routes = nr;
    h->routes[h->nroutes++] = r;
    return 0;
inval:
    free(r.method);
    free(r.buf);
    return -EINVAL;
nomem:
    free(r.method);
    free(r.buf);
    return -ENOMEM;
}

uint16_t ctl_http_port(const ctl_http *h)
{
    return h->port;
}

/* --- Responses --- */

static void free_cjson_buffer(void *p)
{
    cJSON_free(p);
}

/* Queues status with body (taken, may be NULL) and the extra headers of r
 * (may be NULL). close: the request body was not read, end the connection. */
static enum MHD_Result queue(struct MHD_Connection *conn, unsigned status, char *body,
                             const ctl_http_resp *r, bool close)
{
    static char empty[1] = "";
    size_t len = body ? strlen(body) : 0;
    struct MHD_Response *mr =
        body ? MHD_create_response_from_buffer_with_free_callback(len, body, free_cjson_buffer)
             : MHD_create_response_from_buffer_with_free_callback(0, empty, NULL);
    if (!mr) {
        cJSON_free(body);
        return MHD_NO;
    }
    bool ok = true;
    if (body)
        ok &= MHD_add_response_header(mr, "Content-Type", "application/json") == MHD_YES;
    ok &= MHD_add_response_header(mr, "X-Content-Type-Options", "nosniff") == MHD_YES;
    ok &= MHD_add_response_header(mr, "Cache-Control", "no-store") == MHD_YES;
    if (close)
        ok &= MHD_add_response_header(mr, "Connection", "close") == MHD_YES;
    for (size_t i = 0; r && i < r->nh; i++)
        ok &= MHD_add_response_header(mr, r->hname[i], r->hval[i]) == MHD_YES;
    enum MHD_Result res = ok ? MHD_queue_response(conn, status, mr) : MHD_NO;
    MHD_destroy_response(mr);
    return res;
}

/* The uniform error body, or NULL without memory. */
static char *error_body(const char *code, const char *msg)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *err = cJSON_AddObjectToObject(root, "error");
    char *s = NULL;
    if (err && cJSON_AddStringToObject(err, "code", code) &&
        cJSON_AddStringToObject(err, "message", msg))
        s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

static enum MHD_Result queue_error(struct MHD_Connection *conn, unsigned status, const char *code,
                                   const char *msg, const ctl_http_resp *r, bool close)
{
    char *body = error_body(code, msg);
    if (!body)
        return MHD_NO;
    return queue(conn, status, body, r, close);
}

/* Parses a single "bytes=a-b", "bytes=a-" or "bytes=-n" against size:
 * 1 with [*from, *from + *len) set, 0 to send the whole file (no header,
 * several ranges, a form we do not read), -1 unsatisfiable. */
static int parse_range(const char *h, uint64_t size, uint64_t *from, uint64_t *len)
{
    if (!h || strncmp(h, "bytes=", 6) != 0 || strchr(h, ','))
        return 0;
    const char *p = h + 6;
    char *end;
    uint64_t a = 0, b = size ? size - 1 : 0;
    bool suffix = *p == '-';
    if (!suffix) {
        if (*p < '0' || *p > '9')
            return 0;
        errno = 0;
        a = strtoull(p, &end, 10);
        if (errno || *end != '-')
            return 0;
        p = end;
    }
    p++; /* the '-' */
    if (*p) {
        if (*p < '0' || *p > '9')
            return 0;
        errno = 0;
        uint64_t v = strtoull(p, &end, 10);
        if (errno || *end)
            return 0;
        if (suffix) {
            if (v == 0)
                return -1;
            a = v >= size ? 0 : size - v;
        } else if (v < b) {
            b = v;
        }
    } else if (suffix) {
        return 0;
    }
    if (size == 0 || a >= size || a > b)
        return -1;
    *from = a;
    *len = b - a + 1;
    return 1;
}

/* Queues a bytes or file response of r (taking its body or fd). */
static enum MHD_Result queue_raw(struct MHD_Connection *conn, const char *method, ctl_http_resp *r)
{
    unsigned status = r->status;
    uint64_t off = 0, len = r->fd_size;
    char crange[80] = "";
    struct MHD_Response *mr;
    if (r->has_fd) {
        int rr = status == 200 && strcmp(method, "GET") == 0
                     ? parse_range(MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Range"),
                                   r->fd_size, &off, &len)
                     : 0;
        if (rr < 0) {
            snprintf(crange, sizeof(crange), "bytes */%llu", (unsigned long long)r->fd_size);
            close(r->fd);
            r->has_fd = false;
            ctl_http_resp hr = {0};
            enum MHD_Result res = ctl_http_resp_header(&hr, "Content-Range", crange) == 0
                                      ? queue_error(conn, 416, "range_not_satisfiable",
                                                    "range outside the file", &hr, false)
                                      : MHD_NO;
            resp_clear(&hr);
            return res;
        }
        if (rr > 0) {
            status = 206;
            snprintf(crange, sizeof(crange), "bytes %llu-%llu/%llu", (unsigned long long)off,
                     (unsigned long long)(off + len - 1), (unsigned long long)r->fd_size);
        }
        mr = MHD_create_response_from_fd_at_offset64(len, r->fd, off);
        if (mr)
            r->has_fd = false; /* MHD closes it */
    } else {
        mr = MHD_create_response_from_buffer_with_free_callback(r->blen, r->bin, free);
        if (mr)
            r->bin = NULL;
    }
    if (!mr)
        return MHD_NO;
    bool ok = MHD_add_response_header(mr, "Content-Type", r->ctype) == MHD_YES;
    ok &= MHD_add_response_header(mr, "X-Content-Type-Options", "nosniff") == MHD_YES;
    ok &= MHD_add_response_header(mr, "Cache-Control", "no-store") == MHD_YES;
    if (r->fd_size || crange[0])
        ok &= MHD_add_response_header(mr, "Accept-Ranges", "bytes") == MHD_YES;
    if (crange[0])
        ok &= MHD_add_response_header(mr, "Content-Range", crange) == MHD_YES;
    for (size_t i = 0; i < r->nh; i++)
        ok &= MHD_add_response_header(mr, r->hname[i], r->hval[i]) == MHD_YES;
    enum MHD_Result res = ok ? MHD_queue_response(conn, status, mr) : MHD_NO;
    MHD_destroy_response(mr);
    return res;
}

int ctl_http_resp_json(ctl_http_resp *resp, unsigned status, cJSON *body)
{
    if (!body || !valid_status(status)) {
        cJSON_Delete(body);
        return -EINVAL;
    }
    char *s = cJSON_PrintUnformatted(body);
    cJSON_Delete(body);
    if (!s)
        return -ENOMEM;
    resp_start(resp, status);
    resp->body = s;
    return 0;
}

int ctl_http_resp_error(ctl_http_resp *resp, unsigned status, const char *code, const char *fmt,
                        ...)
{
    if (!code || !fmt || !valid_status(status))
        return -EINVAL;
    char msg[ERR_MESSAGE_MAX + 1];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0)
        return -EINVAL;
    char *s = error_body(code, msg);
    if (!s)
        return -ENOMEM;
    resp_start(resp, status);
    resp->body = s;
    return 0;
}

int ctl_http_resp_empty(ctl_http_resp *resp, unsigned status)
{
    if (!valid_status(status))
        return -EINVAL;
    resp_start(resp, status);
    return 0;
}

static bool ctype_ok(const char *t)
{
    return t && *t && strlen(t) < CTYPE_MAX && !strpbrk(t, "\r\n");
}

int ctl_http_resp_bytes(ctl_http_resp *resp, unsigned status, const char *content_type,
                        const void *buf, size_t len)
{
    if (!valid_status(status) || !ctype_ok(content_type) || (!buf && len))
        return -EINVAL;
    char *copy = malloc(len ? len : 1);
    if (!copy)
        return -ENOMEM;
    if (len)
        memcpy(copy, buf, len);
    resp_start(resp, status);
    resp->bin = copy;
    resp->blen = len;
    snprintf(resp->ctype, sizeof(resp->ctype), "%s", content_type);
    return 0;
}

int ctl_http_resp_fd(ctl_http_resp *resp, unsigned status, const char *content_type, int fd,
                     uint64_t size)
{
    if (!valid_status(status) || !ctype_ok(content_type) || fd < 0) {
        if (fd >= 0)
            close(fd);
        return -EINVAL;
    }
    resp_start(resp, status);
    resp->has_fd = true;
    resp->fd = fd;
    resp->fd_size = size;
    snprintf(resp->ctype, sizeof(resp->ctype), "%s", content_type);
    return 0;
}

int ctl_http_resp_header(ctl_http_resp *resp, const char *name, const char *value)
{
    static const char *const reserved[] = {
        "Content-Type",  "Content-Length", "X-Content-Type-Options",
        "Cache-Control", "Connection",     "Transfer-Encoding"};
    if (!name || !*name || !value || strpbrk(name, "\r\n: \t") || strpbrk(value, "\r\n"))
        return -EINVAL;
    for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
        if (strcasecmp(name, reserved[i]) == 0)
            return -EINVAL;
    if (resp->nh >= CTL_HTTP_RESP_HEADERS_MAX)
        return -ENOSPC;
    char *n = strdup(name), *v = strdup(value);
    if (!n || !v) {
        free(n);
        free(v);
        return -ENOMEM;
    }
    resp->hname[resp->nh] = n;
    resp->hval[resp->nh++] = v;
    return 0;
}

/* --- Requests --- */

const char *ctl_http_req_method(const ctl_http_req *req)
{
    return req->method;
}

const char *ctl_http_req_path(const ctl_http_req *req)
{
    return req->path;
}

const char *ctl_http_req_param(const ctl_http_req *req, const char *name)
{
    const route *r = req->route;
    for (size_t i = 0; r && i < r->nseg; i++)
        if (r->param[i] && strcmp(r->seg[i], name) == 0)
            return req->seg[i];
    return NULL;
}

const char *ctl_http_req_query(const ctl_http_req *req, const char *name)
{
    const char *v = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
    if (!v && MHD_lookup_connection_value_n(req->conn, MHD_GET_ARGUMENT_KIND, name, strlen(name),
                                            NULL, NULL) == MHD_YES)
        return "";
    return v;
}

const char *ctl_http_req_header(const ctl_http_req *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *ctl_http_req_bearer(const ctl_http_req *req)
{
    const char *v = ctl_http_req_header(req, "Authorization");
    if (!v || strncasecmp(v, "Bearer ", 7) != 0)
        return NULL;
    v += 7;
    while (*v == ' ')
        v++;
    return *v ? v : NULL;
}

int ctl_http_req_remote(const ctl_http_req *req, char *buf, size_t len)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr || len < INET6_ADDRSTRLEN + 4)
        return -EINVAL;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const void *)sa;
        if (!inet_ntop(AF_INET, &s4->sin_addr, buf, (socklen_t)len))
            return -EINVAL;
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const void *)sa;
        struct in6_addr a = s6->sin6_addr;
        memset(a.s6_addr + 8, 0, 8); /* the /64: one host holds a whole one */
        if (!inet_ntop(AF_INET6, &a, buf, (socklen_t)len))
            return -EINVAL;
        strcat(buf, "/64");
        return 0;
    }
    return -EINVAL;
}

const cJSON *ctl_http_req_json(const ctl_http_req *req)
{
    return req->json;
}

const char *ctl_http_req_body(const ctl_http_req *req, size_t *len)
{
    *len = req->len;
    return req->len ? req->body : NULL;
}

/* --- Dispatch --- */

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    ctl_http_req *req = calloc(1, sizeof(*req));
    if (!req)
        return NULL;
    req->h = cls;
    req->conn = conn;
    if (strlen(uri) > CTL_HTTP_URL_MAX) {
        req->too_long = true;
    } else {
        req->raw_at = (uintptr_t)uri;
        req->raw = strdup(uri);
        if (!req->raw) {
            free(req);
            return NULL;
        }
    }
    return req;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    ctl_http_req *req = *req_cls;
    if (!req)
        return;
    free(req->raw);
    free(req->path);
    free(req->segbuf);
    free(req->body);
    cJSON_Delete(req->json);
    free(req);
    *req_cls = NULL;
}

/* Splits and decodes the path of req->raw into req->seg / req->path.
 * 0; 1: the path is malformed (400); -ENOMEM. */
static int decode_path(ctl_http_req *req)
{
    const char *raw = req->raw;
    size_t n = strcspn(raw, "?");
    if (n == 0 || raw[0] != '/')
        return 1;
    /* Decoding only shrinks: n bytes hold every segment and its NUL. */
    req->segbuf = malloc(n + 1);
    req->path = malloc(n + 1);
    if (!req->segbuf || !req->path)
        return -ENOMEM;
    char *o = req->segbuf;
    char *p = req->path;
    req->nseg = 0;
    size_t i = 1;
    if (n == 1) {
        strcpy(req->path, "/");
        return 0;
    }
    for (;;) {
        char *start = o;
        while (i < n && raw[i] != '/') {
            unsigned char c = (unsigned char)raw[i];
            if (c == '%') {
                int hi = i + 2 < n ? hexval(raw[i + 1]) : -1;
                int lo = hi >= 0 ? hexval(raw[i + 2]) : -1;
                if (lo < 0)
                    return 1;
                c = (unsigned char)(hi * 16 + lo);
                i += 3;
            } else {
                i++;
            }
            if (c < 0x20 || c == 0x7f)
                return 1;
            *o++ = (char)c;
        }
        *o = '\0';
        if (!c2d_utf8_valid((const unsigned char *)start, (size_t)(o - start)))
            return 1;
        *p++ = '/';
        memcpy(p, start, (size_t)(o - start));
        p += o - start;
        if (req->nseg < CTL_HTTP_SEGMENTS_MAX)
            req->seg[req->nseg] = start;
        req->nseg++; /* beyond the maximum: matches no route */
        o++;
        if (i >= n)
            break;
        i++; /* the '/' */
    }
    *p = '\0';
    return 0;
}

static bool route_matches_path(const route *r, const ctl_http_req *req)
{
    if (r->nseg != req->nseg)
        return false;
    for (size_t i = 0; i < r->nseg; i++) {
        if (r->param[i] ? req->seg[i][0] == '\0' : strcmp(r->seg[i], req->seg[i]) != 0)
            return false;
    }
    return true;
}

/* True if the query of a raw request target has a '%' that does not start
 * two hex digits (MHD would pass it on as it is). */
static bool bad_query_escape(const char *raw)
{
    const char *q = raw ? strchr(raw, '?') : NULL;
    for (; q && *q; q++)
        if (*q == '%' && !(isxdigit((unsigned char)q[1]) && isxdigit((unsigned char)q[2])))
            return true;
    return false;
}

/* True if s (n bytes) holds a control byte (below 0x20, or DEL); tab
 * passes if tab_ok. */
static bool has_ctl(const char *s, size_t n, bool tab_ok)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && !(tab_ok && c == '\t')) || c == 0x7f)
            return true;
    }
    return false;
}

/* Refuses NUL and control bytes in header and query names and values (a
 * tab only inside a header value: RFC 9110 allows HTAB in field values) and
 * non-UTF-8 query arguments. */
static enum MHD_Result check_value(void *cls, enum MHD_ValueKind kind, const char *key,
                                   size_t key_size, const char *value, size_t value_size)
{
    bool *bad = cls;
    const bool header = kind == MHD_HEADER_KIND;
    if (strlen(key) != key_size || (value && strlen(value) != value_size))
        *bad = true;
    else if (has_ctl(key, key_size, false) || (value && has_ctl(value, value_size, header)))
        *bad = true;
    else if (!header && (!c2d_utf8_valid((const unsigned char *)key, key_size) ||
                         (value && !c2d_utf8_valid((const unsigned char *)value, value_size))))
        *bad = true;
    return *bad ? MHD_NO : MHD_YES;
}

/* The first call, headers read, body not yet: everything that can be
 * refused before the body is. Returns true and sets *res when it answered. */
static bool precheck(ctl_http *h, ctl_http_req *req, struct MHD_Connection *conn,
                     enum MHD_Result *res)
{
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    const char *te = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Transfer-Encoding");
    bool declared = false;
    unsigned long long clen = 0;
    if (cl) {
        char *end;
        errno = 0;
        clen = strtoull(cl, &end, 10);
        if (cl[0] < '0' || cl[0] > '9' || *end || errno) {
            *res = queue_error(conn, 400, "bad_request", "bad Content-Length", NULL, true);
            return true;
        }
        declared = clen > 0;
    }
    req->body_expected = declared || te;
    bool close = req->body_expected;
    if (req->too_long) {
        *res = queue_error(conn, 414, "uri_too_long", "request target too long", NULL, close);
        return true;
    }
    /* MHD 0.9.75 cuts the target at a raw NUL byte and carries on with
     * what precedes it. The target and the version sit in MHD's buffer
     * separated by one space: a gap longer than the string we saw means
     * bytes were hidden behind a NUL (or extra blanks). */
    uintptr_t ver = (uintptr_t)req->version;
    if (req->raw_at && ver > req->raw_at && ver - req->raw_at <= CTL_HTTP_CONN_MEMORY &&
        ver - req->raw_at != strlen(req->raw) + 1) {
        *res = queue_error(conn, 400, "bad_request", "malformed request line", NULL, close);
        return true;
    }
    int drc = decode_path(req);
    if (drc < 0) {
        *res = MHD_NO;
        return true;
    }
    bool bad = drc > 0 || bad_query_escape(req->raw);
    if (!bad)
        MHD_get_connection_values_n(conn, MHD_HEADER_KIND | MHD_GET_ARGUMENT_KIND, check_value,
                                    &bad);
    if (bad) {
        *res =
            queue_error(conn, 400, "bad_request", "malformed path, query or header", NULL, close);
        return true;
    }
    bool path_known = false;
    for (size_t i = 0; i < h->nroutes && !req->route; i++) {
        const route *r = &h->routes[i];
        if (route_matches_path(r, req)) {
            path_known = true;
            if (strcmp(r->method, req->method) == 0)
                req->route = r;
        }
    }
    if (!req->route && !path_known) {
        *res = queue_error(conn, 404, "not_found", "no such resource", NULL, close);
        return true;
    }
    if (!req->route) {
        char allow[ALLOW_MAX] = "";
        size_t used = 0;
        for (size_t i = 0; i < h->nroutes; i++) {
            const route *r = &h->routes[i];
            if (!route_matches_path(r, req))
                continue;
            bool dup = false;
            for (size_t j = 0; j < i && !dup; j++)
                dup = route_matches_path(&h->routes[j], req) &&
                      strcmp(h->routes[j].method, r->method) == 0;
            size_t m = strlen(r->method);
            if (dup || used + m + 3 > sizeof(allow))
                continue;
            if (used) {
                memcpy(allow + used, ", ", 2);
                used += 2;
            }
            memcpy(allow + used, r->method, m + 1);
            used += m;
        }
        ctl_http_resp r = {0};
        int rc = ctl_http_resp_header(&r, "Allow", allow);
        *res = rc == 0
                   ? queue_error(conn, 405, "method_not_allowed", "method not allowed", &r, close)
                   : MHD_NO;
        resp_clear(&r);
        return true;
    }
    if (declared && clen > h->body_max) {
        *res = queue_error(conn, 413, "payload_too_large", "request body too large", NULL, true);
        return true;
    }
    if (req->body_expected) {
        const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
        size_t n = ct ? strcspn(ct, "; \t") : 0;
        if (!ct || n != strlen("application/json") || strncasecmp(ct, "application/json", n) != 0) {
            *res = queue_error(conn, 415, "unsupported_media_type",
                               "request body must be application/json", NULL, true);
            return true;
        }
    }
    return false;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
    ctl_http *h = cls;
    ctl_http_req *req = *req_cls;
    if (!req)
        return MHD_NO;
    if (!req->started) {
        req->started = true;
        req->method = method;
        req->version = version;
        enum MHD_Result res;
        if (precheck(h, req, conn, &res)) {
            req->answered = true;
            return res;
        }
        return MHD_YES;
    }
    if (req->answered) {
        /* Answered before the body: drop whatever MHD still hands us. */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (req->too_large) {
        /* MHD 0.9.75 queues no response while a body is arriving: drop the
         * rest, answer 413 at its end, or close if it goes on. */
        if (*upload_data_size) {
            if (*upload_data_size > CTL_HTTP_DISCARD_MAX - req->discarded)
                return MHD_NO;
            req->discarded += *upload_data_size;
            *upload_data_size = 0;
            return MHD_YES;
        }
        return queue_error(conn, 413, "payload_too_large", "request body too large", NULL, true);
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        if (n > h->body_max - req->len) {
            req->too_large = true;
            free(req->body);
            req->body = NULL;
            req->len = req->cap = 0;
            req->discarded = n;
            *upload_data_size = 0;
            return n > CTL_HTTP_DISCARD_MAX ? MHD_NO : MHD_YES;
        }
        if (req->len + n + 1 > req->cap) {
            size_t cap = req->cap ? req->cap : 1024;
            while (cap < req->len + n + 1)
                cap *= 2;
            if (cap > h->body_max + 1)
                cap = h->body_max + 1;
            char *nb = realloc(req->body, cap);
            if (!nb)
                return MHD_NO;
            req->body = nb;
            req->cap = cap;
        }
        memcpy(req->body + req->len, upload_data, n);
        req->len += n;
        req->body[req->len] = '\0';
        *upload_data_size = 0;
        return MHD_YES;
    }

    /* The whole request is here. */
    if (req->len) {
        if (memchr(req->body, '\0', req->len) ||
            !c2d_utf8_valid((const unsigned char *)req->body, req->len))
            return queue_error(conn, 400, "bad_json", "request body is not UTF-8 JSON text", NULL,
                               false);
        const char *end = NULL;
        req->json = cJSON_ParseWithOpts(req->body, &end, 1);
        if (!req->json) {
            char msg[96];
            snprintf(msg, sizeof(msg), "request body is not valid JSON (at byte %zu)",
                     end && end >= req->body ? (size_t)(end - req->body) : (size_t)0);
            return queue_error(conn, 400, "bad_json", msg, NULL, false);
        }
        if (!cJSON_IsObject(req->json))
            return queue_error(conn, 400, "bad_json", "request body must be a JSON object", NULL,
                               false);
        if (has_nul_escape(req->body, req->len))
            return queue_error(conn, 400, "bad_json", "strings must not hold NUL (\\u0000)", NULL,
                               false);
    }
    ctl_http_resp resp = {0};
    int rc = req->route->fn(req, &resp, req->route->ud);
    enum MHD_Result res;
    if (rc < 0) {
        resp_clear(&resp);
        res = queue_error(conn, 500, "internal", "internal error", NULL, false);
    } else if (!resp.set) {
        res = queue(conn, 204, NULL, &resp, false);
    } else if (resp.bin || resp.has_fd) {
        res = queue_raw(conn, req->method, &resp);
    } else {
        char *body = resp.body;
        resp.body = NULL;
        res = queue(conn, resp.status, body, &resp, false);
    }
    resp_clear(&resp);
    return res;
}

int ctl_http_start(ctl_http *h)
{
    if (h->d)
        return -EALREADY;
    unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD;
    if (h->sa.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    struct MHD_OptionItem opts[] = {
        {MHD_OPTION_SOCK_ADDR, 0, &h->sa},
        {MHD_OPTION_CONNECTION_LIMIT, h->conn_max, NULL},
        {MHD_OPTION_CONNECTION_TIMEOUT, h->timeout_s, NULL},
        {MHD_OPTION_CONNECTION_MEMORY_LIMIT, CTL_HTTP_CONN_MEMORY, NULL},
        {MHD_OPTION_STRICT_FOR_CLIENT, 1, NULL},
        {MHD_OPTION_THREAD_POOL_SIZE, h->threads > 1 ? h->threads : 1, NULL},
        {MHD_OPTION_END, 0, NULL},
    };
    errno = 0;
    h->d = MHD_start_daemon(flags, h->cfg_port, NULL, NULL, on_request, h,
                            MHD_OPTION_URI_LOG_CALLBACK, on_uri, h, MHD_OPTION_NOTIFY_COMPLETED,
                            on_completed, h, MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
    if (!h->d)
        return errno ? -errno : -EIO;
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info ? info->port : h->cfg_port;
    return 0;
}
