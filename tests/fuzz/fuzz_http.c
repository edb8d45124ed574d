/* The whole HTTP API (controller/http.c and controller/api*.c) on a real
 * loopback socket, over a real LMDB ledger in a temporary directory
 * (fuzz_scratch.h), set up as c2d-controller sets it up (main.c):
 * directory, revocation database, device state, the API with the ledger,
 * routes, a server on 127.0.0.1 with a free port.
 *
 * Set-up, once: the distributor (c2d-controller init), a log-in; an
 * installer made through the API and its first user's password set through
 * the mailed link, a log-in; in the installer's space a client, a site, a
 * recorder with two channels, a dashcam, a role, a user, a group, a driver,
 * a geofence, a bookmark, and a virtual disk attached to the recorder.
 *
 * Input: the raw bytes of an HTTP request (or several, pipelined), sent on a
 * fresh connection that is then half-closed. Every "@TOKEN@" is replaced by
 * the distributor's session token and every "@ITOKEN@" by the installer's,
 * so inputs get past authentication (fuzz_http.dict has both); ids of the
 * objects are small numbers the seeds use.
 *
 * Invariants (abort on violation):
 *  - the server answers with a well-formed response or closes without a
 *    byte: "HTTP/1.x NNN" with NNN in 100..599, headers ending in a blank
 *    line, never 500 (a handler failing on input it should have refused);
 *  - an answer of the API (it carries X-Content-Type-Options: nosniff) with
 *    Content-Type application/json has a body that parses as JSON;
 *  - after every input the server still answers GET /api/v1/me, with 200
 *    for a session the input did not end (401 if it did: then the world is
 *    made again, as it is every RESET_EVERY inputs to bound the ledger).
 * Leaks are LSan's to report: libFuzzer checks after every input. */
#include "controller/api.h"
#include "controller/devstate.h"
#include "controller/directory.h"
#include "controller/http.h"
#include "controller/ledger.h"
#include "controller/password.h"
#include "controller/revoke.h"
#include "controller/rng.h"
#include "fuzz.h"
#include "fuzz_scratch.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#define DIST_EMAIL "dist@example.com"
#define INST_EMAIL "inst@example.com"
#define PASSWORD "fuzz password"
/* Password hashing is not what is fuzzed: one round keeps log-ins cheap. */
#define PW_ITERATIONS 1

#define TOKEN_MARK "@TOKEN@"
#define ITOKEN_MARK "@ITOKEN@"

/* Objects made per input stay until a reset: a few thousand inputs keep
 * the ledger far below its map. */
#define RESET_EVERY 5000
#define LEDGER_MAP_BYTES (256u << 20)

/* Requests larger than the URL and header limits plus a body at
 * body_max are refused early anyway; longer inputs only slow the run. */
#define INPUT_MAX (CTL_HTTP_CONN_MEMORY + CTL_HTTP_BODY_MAX_DEFAULT + 4096)
/* Responses are small JSON documents; a recording is not (there is none). */
#define RESP_MAX (4u << 20)
/* A server that neither answers nor closes in this long is hung. */
#define IO_TIMEOUT_S 8
/* A server that sends nothing for this long waits for more of the request
 * (answers take well under a millisecond here). */
#define QUIET_MS 5
/* Tries of a connect that found no free local port, 1 ms apart. */
#define CONNECT_TRIES 5000

static struct {
    int ready;
    char root[256];
    ctl_ledger *l;
    ctl_dir *dir;
    ctl_devstate *ds;
    ctl_rng *rng;
    ctl_api *api;
    ctl_http *http;
    uint16_t port;
    char dtok[128], itok[128];
    char link[128]; /* the last set-password link's token mailed */
    unsigned long inputs;
} w;

/* ---- helpers ---------------------------------------------------------------- */

static int mail(void *ud, const char *to, const char *subject, const char *body)
{
    (void)ud;
    (void)to;
    (void)subject;
    const char *t = strstr(body, "token=");
    if (t) {
        t += 6;
        size_t n = strspn(t, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_");
        if (n < sizeof(w.link))
            snprintf(w.link, sizeof(w.link), "%.*s", (int)n, t);
    }
    return 0;
}

static int connect_server(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    FUZZ_ASSERT(fd >= 0);
    struct timeval tv = {.tv_sec = IO_TIMEOUT_S};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(w.port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* Out of local ports (thousands of connections a second): wait for
     * some to come free. Anything else is the server's failure. */
    for (int tries = 0;; tries++) {
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
            return fd;
        if (errno == EINTR) {
            /* libFuzzer's timer: the connection goes on; wait for it. */
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            int soerr = 0, pr;
            socklen_t sl = sizeof(soerr);
            while ((pr = poll(&pfd, 1, IO_TIMEOUT_S * 1000)) < 0 && errno == EINTR)
                ;
            if (pr > 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0)
                return fd;
            errno = soerr ? soerr : ETIMEDOUT;
        }
        if (errno != EADDRNOTAVAIL || tries == CONNECT_TRIES) {
            fprintf(stderr, "fuzz_http: connect to 127.0.0.1:%u: %s\n", (unsigned)w.port,
                    strerror(errno));
            FUZZ_ASSERT(!"the server accepts connections");
        }
        usleep(1000);
    }
}

/* The value of header name in the head [p, end) (case-insensitive). */
static const char *header(const char *p, const char *end, const char *name, size_t *vlen)
{
    size_t nl = strlen(name);
    while (p < end) {
        const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
        if (!eol)
            eol = end;
        if ((size_t)(eol - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (v < eol && *v == ' ')
                v++;
            *vlen = (size_t)(eol - v);
            return v;
        }
        p = eol + 2;
    }
    return NULL;
}

/* Checks the first response at r (n bytes) and returns its status. Its
 * body is checked when it is all that follows the head: a HEAD answer has
 * none after its Content-Length, and pipelined requests have several
 * answers. */
static int check_response(const char *r, size_t n)
{
    for (;;) {
        FUZZ_ASSERT(n >= 12 && (memcmp(r, "HTTP/1.1 ", 9) == 0 || memcmp(r, "HTTP/1.0 ", 9) == 0));
        int status = 0;
        for (int i = 9; i < 12; i++) {
            FUZZ_ASSERT(r[i] >= '0' && r[i] <= '9');
            status = status * 10 + (r[i] - '0');
        }
        FUZZ_ASSERT(status >= 100 && status <= 599);
        FUZZ_ASSERT(n == 12 || r[12] == ' ' || r[12] == '\r');
        const char *end = memmem(r, n, "\r\n\r\n", 4);
        FUZZ_ASSERT(end != NULL);
        size_t head = (size_t)(end - r) + 4;
        if (status == 100) { /* Expect: 100-continue, then the answer */
            r += head;
            n -= head;
            if (n == 0)
                return status; /* the body never came: closed */
            continue;
        }
        FUZZ_ASSERT(status != 500);
        size_t tl, cl;
        const char *nosniff = header(r, end, "X-Content-Type-Options", &tl);
        const char *type = header(r, end, "Content-Type", &tl);
        const char *clen = header(r, end, "Content-Length", &cl);
        if (nosniff && type && tl >= 16 && strncasecmp(type, "application/json", 16) == 0 && clen) {
            size_t blen = strtoul(clen, NULL, 10);
            if (blen > 0 && blen == n - head) {
                cJSON *j = cJSON_ParseWithLength(r + head, blen);
                FUZZ_ASSERT(j != NULL);
                cJSON_Delete(j);
            }
        }
        return status;
    }
}

/* 1 if buf (n bytes) holds a whole first answer: its head and, when it
 * gives a Content-Length, that many bytes after it. */
static int answered(const char *buf, size_t n)
{
    for (;;) {
        const char *end = memmem(buf, n, "\r\n\r\n", 4);
        if (!end || n < 12)
            return 0;
        size_t head = (size_t)(end - buf) + 4, vlen;
        if (memcmp(buf + 9, "100", 3) == 0) {
            buf += head;
            n -= head;
            continue;
        }
        const char *cl = header(buf, end, "Content-Length", &vlen);
        if (!cl)
            return memcmp(buf + 9, "204", 3) == 0 || memcmp(buf + 9, "304", 3) == 0;
        return n - head >= strtoul(cl, NULL, 10);
    }
}

/* Sends n bytes on a new connection and reads the answer: until the
 * server closes, or the first answer is whole, or it has been quiet for
 * QUIET_MS (it waits for more of the request); then half-closes and reads
 * until the server closes. (The half-close only after the data: MHD's
 * edge-triggered epoll reads data and FIN arriving together as data alone
 * and would wait for its idle timeout.) Returns the bytes read (malloc'd,
 * NUL terminated), their count in *len. A server that stops reading (it
 * refused early) is fine: what it sent is read all the same. */
static char *exchange(const void *req, size_t n, size_t *len)
{
    int fd = connect_server();
    for (const char *p = req; n;) {
        ssize_t s = send(fd, p, n, MSG_NOSIGNAL);
        if (s < 0 && errno == EINTR)
            continue;
        if (s <= 0)
            break;
        p += s;
        n -= (size_t)s;
    }
    size_t cap = 4096, got = 0;
    char *buf = malloc(cap);
    FUZZ_ASSERT(buf);
    int shut = 0;
    for (;;) {
        if (!shut && answered(buf, got)) {
            shutdown(fd, SHUT_WR);
            shut = 1;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int pr = poll(&pfd, 1, shut ? IO_TIMEOUT_S * 1000 : QUIET_MS);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr == 0) {
            FUZZ_ASSERT(!shut); /* half-closed and no end: the server hangs */
            shutdown(fd, SHUT_WR);
            shut = 1;
            continue;
        }
        if (got + 1 == cap) {
            FUZZ_ASSERT(cap < RESP_MAX);
            cap *= 2;
            FUZZ_ASSERT((buf = realloc(buf, cap)));
        }
        ssize_t r = recv(fd, buf + got, cap - got - 1, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break; /* closed, or reset after an early refusal */
        got += (size_t)r;
    }
    /* Done: no TIME_WAIT for a connection that sent the first FIN (a few
     * hundred a second would use up the local ports). */
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
    buf[got] = '\0';
    *len = got;
    return buf;
}

/* A request built from parts; the answer's status, its body parsed into
 * *out (if out). */
static int call(const char *method, const char *target, const char *token, const char *body,
                cJSON **out)
{
    char *req = NULL;
    char auth[200] = "";
    if (token)
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s\r\n", token);
    int rn =
        body ? asprintf(&req,
                        "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n%s"
                        "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                        method, target, auth, strlen(body), body)
             : asprintf(&req, "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n%s\r\n",
                        method, target, auth);
    FUZZ_ASSERT(rn > 0);
    size_t n;
    char *resp = exchange(req, (size_t)rn, &n);
    free(req);
    int status = n ? check_response(resp, n) : 0;
    if (out) {
        const char *b = strstr(resp, "\r\n\r\n");
        *out = b ? cJSON_Parse(b + 4) : NULL;
    }
    free(resp);
    return status;
}

/* A request that must answer want; the id of the object answered (0 if
 * none). */
static long ok(const char *method, const char *target, const char *token, int want,
               const char *body)
{
    cJSON *j = NULL;
    int status = call(method, target, token, body, &j);
    if (status != want)
        fprintf(stderr, "fuzz_http set-up: %s %s -> %d, want %d\n", method, target, status, want);
    FUZZ_ASSERT(status == want);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "id");
    long v = cJSON_IsNumber(id) ? (long)id->valuedouble : 0;
    if (getenv("FUZZ_HTTP_TRACE"))
        fprintf(stderr, "set-up: %s %s -> %d id %ld\n", method, target, status, v);
    cJSON_Delete(j);
    return v;
}

static void login(const char *email, char *tok, size_t toklen)
{
    char body[256];
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\"}", email, PASSWORD);
    cJSON *j = NULL;
    FUZZ_ASSERT(call("POST", "/api/v1/session", NULL, body, &j) == 201);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "token");
    FUZZ_ASSERT(cJSON_IsString(t) && strlen(t->valuestring) < toklen);
    snprintf(tok, toklen, "%s", t->valuestring);
    cJSON_Delete(j);
}

/* ---- the world ---------------------------------------------------------------- */

static void teardown(void)
{
    ctl_http_free(w.http);
    ctl_api_free(w.api);
    ctl_rng_free(w.rng);
    ctl_devstate_free(w.ds);
    ctl_dir_free(w.dir);
    ctl_ledger_free(w.l);
    w.http = NULL;
    w.api = NULL;
    w.rng = NULL;
    w.ds = NULL;
    w.dir = NULL;
    w.l = NULL;
    if (w.root[0])
        fuzz_rm_tree(w.root);
    w.root[0] = '\0';
    w.ready = 0;
}

static void objects(void)
{
    char body[512], path[128];
    const char *it = w.itok;
    long inst = ok("POST", "/api/v1/installers", w.dtok, 201,
                   "{\"name\":\"Installer\",\"email\":\"" INST_EMAIL "\"}");
    FUZZ_ASSERT(w.link[0] != '\0');
    snprintf(body, sizeof(body), "{\"token\":\"%s\",\"password\":\"%s\"}", w.link, PASSWORD);
    ok("POST", "/api/v1/set-password", NULL, 204, body);
    login(INST_EMAIL, w.itok, sizeof(w.itok));

    long client = ok("POST", "/api/v1/clients", it, 201,
                     "{\"name\":\"Client\",\"email\":\"client@example.com\"}");
    snprintf(body, sizeof(body), "{\"name\":\"Site\",\"client_id\":%ld}", client);
    long site = ok("POST", "/api/v1/sites", it, 201, body);
    snprintf(body, sizeof(body),
             "{\"name\":\"NVR\",\"serial\":\"NVR-1\",\"model\":\"X8\",\"site_id\":%ld,"
             "\"channels\":2,\"device_id\":\"nvr-1\"}",
             site);
    long rec = ok("POST", "/api/v1/recorders", it, 201, body);
    long dc = ok("POST", "/api/v1/dashcams", it, 201,
                 "{\"name\":\"Van\",\"serial\":\"DC-1\",\"model\":\"D2\",\"plate\":\"AB-1-12\","
                 "\"device_id\":\"dc-1\"}");
    ok("POST", "/api/v1/roles", it, 201,
       "{\"name\":\"Fuzz role\",\"permissions\":[\"site.get\",\"user.get\"]}");
    ok("POST", "/api/v1/users", it, 201, "{\"email\":\"user@example.com\",\"role\":\"Fuzz role\"}");
    snprintf(body, sizeof(body), "{\"name\":\"Group\",\"dashcam_ids\":[%ld]}", dc);
    ok("POST", "/api/v1/groups", it, 201, body);
    long drv = ok("POST", "/api/v1/drivers", it, 201,
                  "{\"name\":\"Driver\",\"license_number\":\"LIC-1\"}");
    snprintf(body, sizeof(body),
             "{\"name\":\"Zone\",\"shape\":{\"type\":\"circle\",\"center\":{\"lat\":48.85,"
             "\"lon\":2.35},\"radius_m\":500},\"dashcam_ids\":[%ld]}",
             dc);
    ok("POST", "/api/v1/geofences", it, 201, body);
    snprintf(path, sizeof(path), "/api/v1/dashcams/%ld/driver", dc);
    snprintf(body, sizeof(body), "{\"driver_id\":%ld}", drv);
    ok("PUT", path, it, 200, body);
    snprintf(path, sizeof(path), "/api/v1/installers/%ld/vdisks", inst);
    snprintf(body, sizeof(body),
             "{\"client_id\":%ld,\"capacity_bytes\":1073741824,\"retention_days\":30}", client);
    long vd = ok("POST", path, w.dtok, 201, body);
    snprintf(path, sizeof(path), "/api/v1/vdisks/%ld/device", vd);
    snprintf(body, sizeof(body), "{\"recorder_id\":%ld}", rec);
    ok("PUT", path, it, 200, body);
}

static void setup(void)
{
    fuzz_scratch_dir("c2d-fuzz-http", w.root, sizeof(w.root));
    char hash[CTL_PW_ENCODED_MAX];
    FUZZ_ASSERT(ctl_ledger_open(w.root, LEDGER_MAP_BYTES, 0, &w.l) == 0);
    FUZZ_ASSERT(ctl_dir_open(w.l, &w.dir) == 0 && ctl_revoke_open(w.dir) == 0);
    FUZZ_ASSERT(ctl_devstate_new(300, 0, &w.ds) == 0);
    FUZZ_ASSERT(ctl_rng_new("fuzz_http", &w.rng) == 0);
    FUZZ_ASSERT(ctl_pw_hash(w.rng, PASSWORD, strlen(PASSWORD), PW_ITERATIONS, hash, sizeof(hash)) ==
                CTL_PW_OK);
    FUZZ_ASSERT(ctl_api_init_distributor(w.dir, w.rng, DIST_EMAIL, hash, 0, NULL) == 0);
    ctl_api_params ap = {.pw_iterations = PW_ITERATIONS,
                         .mail = mail,
                         .ledger = w.l,
                         .data_dir = w.root,
                         .devstate = w.ds};
    ctl_http_config hc = {.address = "127.0.0.1", .timeout_s = IO_TIMEOUT_S / 2};
    FUZZ_ASSERT(ctl_api_new(w.dir, w.rng, &ap, &w.api) == 0);
    FUZZ_ASSERT(ctl_http_new(&hc, &w.http) == 0 && ctl_api_routes(w.api, w.http) == 0);
    FUZZ_ASSERT(ctl_http_start(w.http) == 0);
    w.port = ctl_http_port(w.http);
    w.link[0] = '\0';
    login(DIST_EMAIL, w.dtok, sizeof(w.dtok));
    objects();
    w.ready = 1;
}

static void at_exit(void)
{
    teardown();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > INPUT_MAX)
        return 0;
    if (!w.ready) {
        static int once;
        if (!once) {
            once = 1;
            signal(SIGPIPE, SIG_IGN);
            atexit(at_exit);
        }
        setup();
    }
    const char *const marks[] = {TOKEN_MARK, ITOKEN_MARK}, *const toks[] = {w.dtok, w.itok};
    size_t n;
    char *req = fuzz_subst(data, size, marks, toks, 2, &n);
    size_t rn;
    char *resp = exchange(req, n, &rn);
    if (rn)
        check_response(resp, rn);
    if (getenv("FUZZ_HTTP_TRACE")) /* FUZZ_HTTP_TRACE=1: what each input got */
        fprintf(stderr, "%.*s\n----\n", (int)(rn < 2000 ? rn : 2000), resp);
    free(resp);
    free(req);

    /* The server still answers, and our sessions still hold (else a new
     * world: an input may log out or change a password). */
    int a = call("GET", "/api/v1/me", w.dtok, NULL, NULL);
    int b = call("GET", "/api/v1/me", w.itok, NULL, NULL);
    FUZZ_ASSERT((a == 200 || a == 401) && (b == 200 || b == 401));
    if (a != 200 || b != 200 || ++w.inputs % RESET_EVERY == 0) {
        teardown();
        setup();
    }
    return 0;
}
