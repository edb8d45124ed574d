/* controller/http.c over real HTTP: a server on 127.0.0.1 with a free port,
 * driven by a hand-written blocking socket client (raw requests in, status
 * line, headers and body out), so everything runs under the sanitizers. */
#include "check.h"
#include "controller/http.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* Responses the tests read are small; 1 MiB bounds a runaway one. */
#define RESP_MAX (1024 * 1024)

typedef struct {
    int status;
    char *raw;     /* the whole response, NUL-terminated */
    char *headers; /* points into raw: after the status line */
    char *body;    /* points into raw: after the blank line */
} http_resp;

static void resp_free(http_resp *r)
{
    free(r->raw);
    memset(r, 0, sizeof(*r));
}

static int connect_to(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {.tv_sec = 3};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads until the server closes (every request sends Connection: close) and
 * parses the status line. Returns 0 or -1. */
static int read_resp(int fd, http_resp *out)
{
    memset(out, 0, sizeof(*out));
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    if (!buf)
        return -1;
    for (;;) {
        if (len + 1 >= cap) {
            if (cap >= RESP_MAX)
                break;
            cap *= 2;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                return -1;
            }
            buf = nb;
        }
        ssize_t r = recv(fd, buf + len, cap - len - 1, 0);
        if (r <= 0)
            break; /* closed, reset (after an early refusal) or timed out */
        len += (size_t)r;
    }
    buf[len] = '\0';
    out->raw = buf;
    int major, minor, status;
    if (sscanf(buf, "HTTP/%d.%d %d", &major, &minor, &status) != 3)
        return -1;
    out->status = status;
    char *eol = strstr(buf, "\r\n");
    out->headers = eol ? eol + 2 : buf + len;
    char *sep = strstr(buf, "\r\n\r\n");
    out->body = sep ? sep + 4 : buf + len;
    return 0;
}

/* Sends raw (n bytes) on a new connection and reads the response. */
static int exchange_n(uint16_t port, const char *raw, size_t n, http_resp *out)
{
    int fd = connect_to(port);
    if (fd < 0)
        return -1;
    int rc = send_all(fd, raw, n);
    /* Even if the server closed early (a refusal), read what it sent. */
    int rrc = read_resp(fd, out);
    close(fd);
    return rrc == 0 ? 0 : rc ? rc : rrc;
}

static int exchange(uint16_t port, const char *raw, http_resp *out)
{
    return exchange_n(port, raw, strlen(raw), out);
}

/* A request with an optional JSON body. */
static int request(uint16_t port, const char *method, const char *target, const char *body,
                   http_resp *out)
{
    char *req = NULL;
    int n = body ? asprintf(&req,
                            "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                            "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                            method, target, strlen(body), body)
                 : asprintf(&req, "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
                            method, target);
    if (n < 0)
        return -1;
    int rc = exchange(port, req, out);
    free(req);
    return rc;
}

/* The value of header name in r (case-insensitive), copied into buf. */
static const char *header(const http_resp *r, const char *name, char *buf, size_t size)
{
    size_t nl = strlen(name);
    for (const char *p = r->headers; p && p < r->body;) {
        const char *eol = strstr(p, "\r\n");
        if (!eol || eol == p)
            break;
        if ((size_t)(eol - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ')
                v++;
            snprintf(buf, size, "%.*s", (int)(eol - v), v);
            return buf;
        }
        p = eol + 2;
    }
    return NULL;
}

/* The "code" of an error body, copied into buf; "" if none. */
static const char *error_code(const http_resp *r, char *buf, size_t size)
{
    buf[0] = '\0';
    cJSON *j = cJSON_Parse(r->body);
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItem(j, "error"), "code");
    if (cJSON_IsString(code))
        snprintf(buf, size, "%s", code->valuestring);
    cJSON_Delete(j);
    return buf;
}

/* --- Test routes --- */

/* POST /echo: {"got": <body>, "q": <query "q" or null>, "auth": <bearer>} */
static int h_echo(ctl_http_req *req, ctl_http_resp *resp, void *ud)
{
    cJSON *out = cJSON_CreateObject();
    if (!out)
        return -ENOMEM;
    const cJSON *in = ctl_http_req_json(req);
    cJSON_AddItemToObject(out, "got", in ? cJSON_Duplicate(in, 1) : cJSON_CreateNull());
    const char *q = ctl_http_req_query(req, "q");
    cJSON_AddItemToObject(out, "q", q ? cJSON_CreateString(q) : cJSON_CreateNull());
    const char *tok = ctl_http_req_bearer(req);
    cJSON_AddItemToObject(out, "auth", tok ? cJSON_CreateString(tok) : cJSON_CreateNull());
    return ctl_http_resp_json(resp, 200, out);
}

/* GET /api/v1/clients/{id}/sites/{site} */
static int h_site(ctl_http_req *req, ctl_http_resp *resp, void *ud)
{
    cJSON *out = cJSON_CreateObject();
    if (!out)
        return -ENOMEM;
    cJSON_AddStringToObject(out, "id", ctl_http_req_param(req, "id"));
    cJSON_AddStringToObject(out, "site", ctl_http_req_param(req, "site"));
    cJSON_AddStringToObject(out, "path", ctl_http_req_path(req));
    const char *limit = ctl_http_req_query(req, "limit");
    if (limit)
        cJSON_AddStringToObject(out, "limit", limit);
    return ctl_http_resp_json(resp, 200, out);
}

/* DELETE /api/v1/clients/{id}: 409 with a Retry-After, to test extra
 * headers and error bodies set by handlers. */
static int h_conflict(ctl_http_req *req, ctl_http_resp *resp, void *ud)
{
    int rc = ctl_http_resp_header(resp, "Retry-After", "5");
    if (rc)
        return rc;
    CHECK(ctl_http_resp_header(resp, "Content-Type", "text/html") == -EINVAL);
    CHECK(ctl_http_resp_header(resp, "X-Bad", "a\r\nb") == -EINVAL);
    return ctl_http_resp_error(resp, 409, "conflict", "client %s still has %d sites",
                               ctl_http_req_param(req, "id"), 2);
}

static int h_fail(ctl_http_req *req, ctl_http_resp *resp, void *ud)
{
    ctl_http_resp_json(resp, 200, cJSON_CreateObject());
    return -EIO;
}

static int h_empty(ctl_http_req *req, ctl_http_resp *resp, void *ud)
{
    return 0;
}

/* --- Tests --- */

#define BODY_MAX 1024

static void test_routes_api(void)
{
    ctl_http *h = NULL;
    ctl_http_config bad = {.address = "not-an-address"};
    CHECK(ctl_http_new(&bad, &h) == -EINVAL && h == NULL);
    CHECK(ctl_http_new(NULL, &h) == 0);
    CHECK(ctl_http_route(h, "GET", "no-slash", h_empty, NULL) == -EINVAL);
    CHECK(ctl_http_route(h, "GET", "/a//b", h_empty, NULL) == -EINVAL);
    CHECK(ctl_http_route(h, "GET", "/a/{}", h_empty, NULL) == -EINVAL);
    CHECK(ctl_http_route(h, "GET", "/a/{x", h_empty, NULL) == -EINVAL);
    CHECK(ctl_http_route(h, "GET", "/a/x}", h_empty, NULL) == -EINVAL);
    CHECK(ctl_http_route(h, "GET", "/a/{x}", h_empty, NULL) == 0);
    CHECK(ctl_http_port(h) == 0);
    ctl_http_free(h);
    ctl_http_free(NULL);
}

static void expect(uint16_t port, const char *method, const char *target, const char *body,
                   int status, const char *code)
{
    http_resp r;
    char buf[64];
    int rc = request(port, method, target, body, &r);
    CHECK(rc == 0);
    if (rc == 0 &&
        (r.status != status || (code && strcmp(error_code(&r, buf, sizeof(buf)), code) != 0))) {
        fprintf(stderr, "%s %s: got %d %s, want %d %s\n", method, target, r.status, r.body, status,
                code ? code : "");
        failures++;
    }
    resp_free(&r);
}

static void test_server(void)
{
    ctl_http_config cfg = {
        .address = "127.0.0.1", .port = 0, .body_max = BODY_MAX, .threads = 2, .timeout_s = 5};
    ctl_http *h = NULL;
    CHECK(ctl_http_new(&cfg, &h) == 0);
    if (!h)
        return;
    CHECK(ctl_http_route(h, "POST", "/echo", h_echo, NULL) == 0);
    CHECK(ctl_http_route(h, "GET", "/echo", h_echo, NULL) == 0);
    CHECK(ctl_http_route(h, "GET", "/api/v1/clients/{id}/sites/{site}", h_site, NULL) == 0);
    CHECK(ctl_http_route(h, "DELETE", "/api/v1/clients/{id}", h_conflict, NULL) == 0);
    CHECK(ctl_http_route(h, "PUT", "/api/v1/clients/{id}", h_empty, NULL) == 0);
    CHECK(ctl_http_route(h, "GET", "/fail", h_fail, NULL) == 0);
    CHECK(ctl_http_route(h, "POST", "/empty", h_empty, NULL) == 0);
    CHECK(ctl_http_start(h) == 0);
    CHECK(ctl_http_start(h) == -EALREADY);
    CHECK(ctl_http_route(h, "GET", "/late", h_empty, NULL) == -EBUSY);
    uint16_t port = ctl_http_port(h);
    CHECK(port != 0);

    http_resp r;
    char buf[256];

    /* 200 with a JSON echo, query and bearer token; the standard headers. */
    const char *echo_req = "POST /echo?q=a%20b&x=1 HTTP/1.1\r\nHost: localhost\r\n"
                           "Connection: close\r\nAuthorization: Bearer tok123\r\n"
                           "Content-Type: application/json; charset=utf-8\r\n"
                           "Content-Length: 22\r\n\r\n{\"a\":[1,2,{\"b\":\"\xc3\xa9\"}]}";
    CHECK(exchange(port, echo_req, &r) == 0);
    CHECK(r.status == 200);
    CHECK(strcmp(r.body, "{\"got\":{\"a\":[1,2,{\"b\":\"\xc3\xa9\"}]},\"q\":\"a b\","
                         "\"auth\":\"tok123\"}") == 0);
    CHECK(header(&r, "Content-Type", buf, sizeof(buf)) && strcmp(buf, "application/json") == 0);
    CHECK(header(&r, "X-Content-Type-Options", buf, sizeof(buf)) && strcmp(buf, "nosniff") == 0);
    CHECK(header(&r, "Cache-Control", buf, sizeof(buf)) && strcmp(buf, "no-store") == 0);
    resp_free(&r);

    /* No body, no query, no token; a query arg without '='. */
    CHECK(request(port, "GET", "/echo", NULL, &r) == 0);
    CHECK(r.status == 200 && strcmp(r.body, "{\"got\":null,\"q\":null,\"auth\":null}") == 0);
    resp_free(&r);
    CHECK(request(port, "GET", "/echo?q", NULL, &r) == 0);
    CHECK(r.status == 200 && strcmp(r.body, "{\"got\":null,\"q\":\"\",\"auth\":null}") == 0);
    resp_free(&r);

    /* Path parameters, decoded per segment ("%2F" stays inside one). */
    CHECK(request(port, "GET", "/api/v1/clients/c%2F42/sites/north%20gate?limit=10", NULL, &r) ==
          0);
    CHECK(r.status == 200);
    CHECK(strcmp(r.body, "{\"id\":\"c/42\",\"site\":\"north gate\","
                         "\"path\":\"/api/v1/clients/c/42/sites/north gate\","
                         "\"limit\":\"10\"}") == 0);
    resp_free(&r);

    /* Handler errors with an extra header; handler failure; no response. */
    CHECK(request(port, "DELETE", "/api/v1/clients/7", NULL, &r) == 0);
    CHECK(r.status == 409);
    CHECK(strcmp(r.body, "{\"error\":{\"code\":\"conflict\","
                         "\"message\":\"client 7 still has 2 sites\"}}") == 0);
    CHECK(header(&r, "Retry-After", buf, sizeof(buf)) && strcmp(buf, "5") == 0);
    resp_free(&r);
    expect(port, "GET", "/fail", NULL, 500, "internal");
    CHECK(request(port, "POST", "/empty", "{}", &r) == 0);
    CHECK(r.status == 204 && r.body[0] == '\0');
    resp_free(&r);

    /* 404 and 405 with Allow. */
    expect(port, "GET", "/nope", NULL, 404, "not_found");
    expect(port, "GET", "/", NULL, 404, "not_found");
    expect(port, "GET", "/echo/", NULL, 404, "not_found");
    expect(port, "GET", "/api/v1/clients//sites/x", NULL, 404, "not_found");
    expect(port, "GET", "/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t", NULL, 404, "not_found");
    CHECK(request(port, "GET", "/api/v1/clients/7", NULL, &r) == 0);
    CHECK(r.status == 405);
    CHECK(strcmp(error_code(&r, buf, sizeof(buf)), "method_not_allowed") == 0);
    CHECK(header(&r, "Allow", buf, sizeof(buf)) && strcmp(buf, "DELETE, PUT") == 0);
    resp_free(&r);
    expect(port, "POST", "/nope", "{\"a\":1}", 404, "not_found");

    /* 400: bad JSON, non-object, trailing garbage, non-UTF-8, embedded NUL. */
    expect(port, "POST", "/echo", "{\"a\":", 400, "bad_json");
    expect(port, "POST", "/echo", "[1,2]", 400, "bad_json");
    expect(port, "POST", "/echo", "\"str\"", 400, "bad_json");
    expect(port, "POST", "/echo", "{} x", 400, "bad_json");
    expect(port, "POST", "/echo", "{\"a\":\"\xff\xfe\"}", 400, "bad_json");
    expect(port, "POST", "/echo", "{\"a\":\"\xc0\xaf\"}", 400, "bad_json");
    static const char nul_body[] = "POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                   "Content-Type: application/json\r\nContent-Length: 5\r\n\r\n"
                                   "{}\0{}";
    CHECK(exchange_n(port, nul_body, sizeof(nul_body) - 1, &r) == 0);
    CHECK(r.status == 400 && strcmp(error_code(&r, buf, sizeof(buf)), "bad_json") == 0);
    resp_free(&r);

    /* 415: a body that is not declared JSON. */
    CHECK(exchange(port,
                   "POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                   "Content-Type: text/plain\r\nContent-Length: 2\r\n\r\n{}",
                   &r) == 0);
    CHECK(r.status == 415);
    resp_free(&r);

    /* 400: NUL, control bytes, bad escapes, bad UTF-8 in the path or query. */
    expect(port, "GET", "/api/v1/clients/a%00b/sites/x", NULL, 400, "bad_request");
    expect(port, "GET", "/api/v1/clients/a%0ab/sites/x", NULL, 400, "bad_request");
    expect(port, "GET", "/api/v1/clients/a%zzb/sites/x", NULL, 400, "bad_request");
    expect(port, "GET", "/api/v1/clients/a%4/sites/x", NULL, 400, "bad_request");
    expect(port, "GET", "/api/v1/clients/a/sites/x%", NULL, 400, "bad_request");
    expect(port, "GET", "/api/v1/clients/%ff/sites/x", NULL, 400, "bad_request");
    expect(port, "GET", "/echo?q=a%00b", NULL, 400, "bad_request");
    expect(port, "GET", "/echo?q=%c3", NULL, 400, "bad_request");
    expect(port, "GET", "/echo?limit=%01", NULL, 400, "bad_request");
    expect(port, "GET", "/echo?q=a%7fb", NULL, 400, "bad_request");
    expect(port, "GET", "/echo?q=a%09b", NULL, 400, "bad_request");
    expect(port, "GET", "/echo?a%1fb=1", NULL, 400, "bad_request");
    /* Control bytes in a header value, but a tab (RFC 9110 HTAB). */
    static const char *const bad_headers[] = {"X-A: b\x01"
                                              "c",
                                              "X-A: b\x7f"
                                              "c",
                                              "X-A: b\x1b"
                                              "c"};
    for (size_t i = 0; i < sizeof(bad_headers) / sizeof(bad_headers[0]); i++) {
        char raw[128];
        snprintf(raw, sizeof(raw),
                 "GET /echo HTTP/1.1\r\nHost: x\r\n%s\r\nConnection: close\r\n\r\n",
                 bad_headers[i]);
        CHECK(exchange(port, raw, &r) == 0);
        CHECK(r.status == 400 && strcmp(error_code(&r, buf, sizeof(buf)), "bad_request") == 0);
        resp_free(&r);
    }
    CHECK(exchange(port, "GET /echo HTTP/1.1\r\nHost: x\r\nX-A: b\tc\r\nConnection: close\r\n\r\n",
                   &r) == 0);
    CHECK(r.status == 200);
    resp_free(&r);

    /* A raw NUL byte in the request line, and a malformed request line:
     * MHD refuses those itself. */
    static const char raw_nul[] = "GET /ec\0ho HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    CHECK(exchange_n(port, raw_nul, sizeof(raw_nul) - 1, &r) == 0);
    CHECK(r.status == 400);
    resp_free(&r);
    /* MHD 0.9.75 closes on a request line without spaces, unanswered. */
    CHECK(exchange(port, "GARBAGE\r\n\r\n", &r) != 0 || r.status == 400);
    resp_free(&r);
    CHECK(exchange(port, "GET /echo HTTP/1.1 extra\r\nHost: x\r\n\r\n", &r) == 0);
    CHECK(r.status == 400);
    resp_free(&r);
    CHECK(exchange(port, "GET /echo HTTP/1.1\r\nConnection: close\r\n\r\n", &r) == 0);
    CHECK(r.status == 400); /* HTTP/1.1 without Host */
    resp_free(&r);
    CHECK(exchange(port, "GET /echo HTTP/9.9\r\nHost: x\r\n\r\n", &r) == 0);
    CHECK(r.status >= 400);
    resp_free(&r);

    /* 414: a request target over CTL_HTTP_URL_MAX, in JSON; far longer than
     * MHD's buffer, MHD's own 414. */
    char *target = malloc(CTL_HTTP_URL_MAX + 64);
    if (target) {
        strcpy(target, "/echo?q=");
        size_t n = strlen(target);
        memset(target + n, 'a', CTL_HTTP_URL_MAX);
        target[n + CTL_HTTP_URL_MAX] = '\0';
        expect(port, "GET", target, NULL, 414, "uri_too_long");
        free(target);
    }
    target = malloc(CTL_HTTP_CONN_MEMORY * 2);
    if (target) {
        memset(target, 'a', CTL_HTTP_CONN_MEMORY * 2 - 1);
        target[0] = '/';
        target[CTL_HTTP_CONN_MEMORY * 2 - 1] = '\0';
        CHECK(request(port, "GET", target, NULL, &r) == 0);
        CHECK(r.status == 414 || r.status == 431);
        resp_free(&r);
        free(target);
    }

    /* 413: declared over the limit (answered without sending the body),
     * exactly at the limit (accepted), and chunked past it. */
    CHECK(exchange(port,
                   "POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                   "Content-Type: application/json\r\nContent-Length: 1099511627776\r\n\r\n",
                   &r) == 0);
    CHECK(r.status == 413 && strcmp(error_code(&r, buf, sizeof(buf)), "payload_too_large") == 0);
    resp_free(&r);
    CHECK(exchange(port,
                   "POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                   "Content-Type: application/json\r\nContent-Length: 99999999999999999999999\r\n"
                   "\r\n",
                   &r) == 0);
    CHECK(r.status == 400 || r.status == 413);
    resp_free(&r);
    char big[BODY_MAX + 1];
    memset(big, ' ', BODY_MAX);
    big[0] = '{';
    big[BODY_MAX - 1] = '}';
    big[BODY_MAX] = '\0';
    expect(port, "POST", "/echo", big, 200, NULL);
    char bigger[BODY_MAX + 2];
    memcpy(bigger, big, BODY_MAX - 1);
    strcpy(bigger + BODY_MAX - 1, " }");
    expect(port, "POST", "/echo", bigger, 413, "payload_too_large");

    int fd = connect_to(port);
    CHECK(fd >= 0);
    if (fd >= 0) {
        const char *head = "POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                           "Content-Type: application/json\r\n"
                           "Transfer-Encoding: chunked\r\n\r\n";
        CHECK(send_all(fd, head, strlen(head)) == 0);
        char chunk[600];
        int cn = snprintf(chunk, sizeof(chunk), "200\r\n");
        memset(chunk + cn, ' ', 0x200);
        memcpy(chunk + cn + 0x200, "\r\n", 2);
        size_t clen = (size_t)cn + 0x200 + 2;
        /* Three 512-byte chunks: the third crosses BODY_MAX. Sends may fail
         * once the server has refused and closed. */
        for (int i = 0; i < 3; i++)
            (void)send_all(fd, chunk, clen);
        (void)send_all(fd, "0\r\n\r\n", 5);
        CHECK(read_resp(fd, &r) == 0);
        CHECK(r.status == 413 &&
              strcmp(error_code(&r, buf, sizeof(buf)), "payload_too_large") == 0);
        resp_free(&r);
        close(fd);
    }
    /* A chunked body within the limit is fine. */
    CHECK(exchange(port,
                   "POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                   "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "4\r\n{\"k\"\r\n5\r\n:\"v\"}\r\n0\r\n\r\n",
                   &r) == 0);
    CHECK(r.status == 200 && strncmp(r.body, "{\"got\":{\"k\":\"v\"}", 16) == 0);
    resp_free(&r);

    /* The server still serves after all of that. */
    expect(port, "GET", "/echo", NULL, 200, NULL);
    ctl_http_free(h);
}

int main(void)
{
    test_routes_api();
    test_server();
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
