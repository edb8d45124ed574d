/* The controller's HTTP/JSON API server (issue 3): a libmicrohttpd daemon,
 * a routing table and the request/response conventions every endpoint
 * shares.
 *
 * Lifecycle: ctl_http_new (configure), ctl_http_route for every endpoint,
 * ctl_http_start (bind and serve), ctl_http_free (stop, join MHD's threads,
 * free). The routing table is fixed once started.
 *
 * Routing: a route is a method and a path pattern of '/'-separated segments,
 * where a segment "{name}" matches any one non-empty segment and makes it a
 * path parameter (ctl_http_req_param). Patterns are matched against the raw
 * request path, segment by segment, and each segment is percent-decoded on
 * its own, so "%2F" inside a parameter is data, not a separator. The first
 * route whose pattern and method match wins. A path no pattern matches gets
 * 404 not_found; a path matched only with other methods gets 405
 * method_not_allowed with an Allow header listing them.
 *
 * Before a handler runs, the server refuses (uniform JSON error bodies, see
 * ctl_http_resp_error):
 *   400 bad_request     a decoded path segment, query argument or header with
 *                       a NUL or control byte (below 0x20 or DEL, raw or
 *                       %-escaped; a tab is allowed inside a header value,
 *                       as RFC 9110 allows HTAB in field values), a bad
 *                       percent escape, non-UTF-8 path or query; a request MHD
 *                       cannot parse gets MHD's own 400 (not JSON), or for a
 *                       request line without spaces, a closed connection;
 *   414 uri_too_long    a request target longer than CTL_HTTP_URL_MAX (beyond
 *                       the connection memory limit MHD answers 414 itself);
 *   413 payload_too_large  a body over body_max: refused on the declared
 *                       Content-Length before any byte of it is read. A
 *                       chunked body is dropped (memory freed) as soon as it
 *                       grows past body_max; 413 comes when it ends, or the
 *                       connection is closed unanswered after
 *                       CTL_HTTP_DISCARD_MAX more bytes (MHD 0.9.75 cannot
 *                       answer while a body arrives). The connection is
 *                       closed after a 413. Memory held for a body never
 *                       exceeds body_max + 1 and grows with what arrived;
 *   415 unsupported_media_type  a non-empty body whose Content-Type is not
 *                       application/json;
 *   400 bad_json        a body that is not valid UTF-8 JSON, or not an object.
 * An empty body is no body: ctl_http_req_json returns NULL.
 *
 * Every response carries Content-Type: application/json (bodies are JSON or
 * empty; ctl_http_resp_bytes / _fd set their own type), X-Content-Type-
 * Options: nosniff and Cache-Control: no-store.
 *
 * Threads: the daemon runs its own threads (one polling thread, or a pool of
 * `threads`). Handlers run on those threads, several at once with a pool, so
 * a handler and its ud must be safe to call concurrently; nothing here takes
 * a lock around them. A ctl_http_req / ctl_http_resp belongs to one call of
 * one handler: it and every string it returns are valid only during that
 * call and only on that thread. A handler must not block for long (it holds
 * a pool thread, and a connection slot). ctl_http_free must not be called
 * from a handler. There is no global state: several servers may run in one
 * process. The library never logs. */
#ifndef CTL_HTTP_H
#define CTL_HTTP_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

/* Default request body limit: the API's largest documents (a geofence
 * polygon, a role's permission list) are a few KiB; 64 KiB leaves room
 * without letting a client park much memory per connection. */
#define CTL_HTTP_BODY_MAX_DEFAULT (64 * 1024)

/* Request target (path + query) limit, in bytes as sent. IDs are short and
 * list filters few; 4 KiB is what common proxies accept by default. */
#define CTL_HTTP_URL_MAX 4096

/* Default simultaneous connections: an installer portal, not a CDN; keeps
 * descriptors and the per-connection memory (below) bounded. */
#define CTL_HTTP_CONN_MAX_DEFAULT 256

/* Default idle timeout per connection, seconds: drops slow or stalled
 * clients (slowloris) without cutting a human's keep-alive too short. */
#define CTL_HTTP_TIMEOUT_DEFAULT 30

/* MHD's per-connection buffer (request line + headers), bytes: bounds the
 * headers a client can send; bodies are held separately (body_max). */
#define CTL_HTTP_CONN_MEMORY 32768

/* After a chunked body passes body_max, bytes read and dropped while
 * waiting for its end to answer 413 (MHD 0.9.75 cannot answer mid-body);
 * a body going on longer has its connection closed without an answer. */
#define CTL_HTTP_DISCARD_MAX (256 * 1024)

/* Path segments in a pattern or a matched path, and headers a handler may
 * add to one response: fixed bounds so matching never allocates per
 * segment. */
#define CTL_HTTP_SEGMENTS_MAX 16
#define CTL_HTTP_RESP_HEADERS_MAX 8

/* Routes one server holds at most. */
#define CTL_HTTP_ROUTES_MAX 256

typedef struct ctl_http ctl_http;
typedef struct ctl_http_req ctl_http_req;
typedef struct ctl_http_resp ctl_http_resp;

/* A handler answers with one of ctl_http_resp_json / _error / _empty and
 * returns 0. If it sets no response it answers 204. A negative return
 * (-errno) discards whatever it set and answers 500 internal. */
typedef int (*ctl_http_handler)(ctl_http_req *req, ctl_http_resp *resp, void *ud);

typedef struct {
    const char *address; /* numeric IPv4 or IPv6 address; NULL: "127.0.0.1" */
    uint16_t port;       /* 0: any free port (see ctl_http_port) */
    size_t body_max;     /* 0: CTL_HTTP_BODY_MAX_DEFAULT */
    unsigned conn_max;   /* 0: CTL_HTTP_CONN_MAX_DEFAULT */
    unsigned timeout_s;  /* 0: CTL_HTTP_TIMEOUT_DEFAULT */
    unsigned threads;    /* 0 or 1: one internal polling thread; more: a pool */
} ctl_http_config;

/* Makes a server that is not yet listening. cfg is copied (address too);
 * NULL means all defaults. 0, -EINVAL (bad address) or -ENOMEM; *out is set
 * only on success. */
int ctl_http_new(const ctl_http_config *cfg, ctl_http **out);

/* Stops the daemon if started (waits for running handlers) and frees. NULL
 * is a no-op. */
void ctl_http_free(ctl_http *h);

/* Adds a route. method ("GET", ...) and pattern (must start with '/') are
 * copied; ud is passed to fn. 0; -EINVAL (bad pattern: empty segment, more
 * than CTL_HTTP_SEGMENTS_MAX segments, an unclosed '{', an empty name);
 * -EBUSY after ctl_http_start; -ENOSPC beyond CTL_HTTP_ROUTES_MAX; -ENOMEM. */
int ctl_http_route(ctl_http *h, const char *method, const char *pattern, ctl_http_handler fn,
                   void *ud);

/* Binds and starts serving. 0; -EALREADY if started; -EADDRINUSE or another
 * -errno if the daemon could not start (then ctl_http_free as usual). */
int ctl_http_start(ctl_http *h);

/* The port the server listens on (the chosen one when configured with 0);
 * 0 before ctl_http_start. */
uint16_t ctl_http_port(const ctl_http *h);

/* --- Requests (valid during the handler call only) --- */

const char *ctl_http_req_method(const ctl_http_req *req);

/* The decoded path segments joined with '/', e.g. "/api/v1/clients/42". */
const char *ctl_http_req_path(const ctl_http_req *req);

/* The decoded value of the path parameter "{name}", or NULL. */
const char *ctl_http_req_param(const ctl_http_req *req, const char *name);

/* The decoded value of query argument name (last one if repeated), "" for
 * "?name" with no '=', or NULL if absent. */
const char *ctl_http_req_query(const ctl_http_req *req, const char *name);

/* A request header (case-insensitive name), or NULL. */
const char *ctl_http_req_header(const ctl_http_req *req, const char *name);

/* The token of "Authorization: Bearer <token>" (scheme case-insensitive),
 * or NULL if there is none or it is empty. */
const char *ctl_http_req_bearer(const ctl_http_req *req);

/* The peer's address as text into buf (len >= INET6_ADDRSTRLEN + 4): an
 * IPv4 address as is, an IPv6 one as its /64 ("2001:db8::/64"), the key to
 * throttle a host by. 0 or -EINVAL (unknown family, buffer too small). */
int ctl_http_req_remote(const ctl_http_req *req, char *buf, size_t len);

/* The parsed body: always a JSON object, or NULL if the request had no
 * body. Owned by the request. */
const cJSON *ctl_http_req_json(const ctl_http_req *req);

/* The raw body and its length (NUL-terminated, NULL and 0 when none). */
const char *ctl_http_req_body(const ctl_http_req *req, size_t *len);

/* --- Responses --- */

/* Answers status with body (a JSON object or array), which it takes in every
 * case (freed on error too). 0, -EINVAL (status outside 100..599, body
 * NULL) or -ENOMEM. */
int ctl_http_resp_json(ctl_http_resp *resp, unsigned status, cJSON *body);

/* Answers status with {"error":{"code":code,"message":<printf fmt...>}}.
 * code is a stable snake_case identifier clients match on; the message is
 * for people (at most 512 bytes are kept). 0, -EINVAL or -ENOMEM. */
int ctl_http_resp_error(ctl_http_resp *resp, unsigned status, const char *code, const char *fmt,
                        ...) __attribute__((format(printf, 4, 5)));

/* Answers status with no body (e.g. 204). 0 or -EINVAL. Each ctl_http_resp_*
 * answer replaces the one set before (a file set before is closed). */
int ctl_http_resp_empty(ctl_http_resp *resp, unsigned status);

/* Answers status with len bytes of buf (copied) as content_type (for
 * bodies that are not JSON: an HLS playlist). 0, -EINVAL (bad status,
 * content type with CR/LF, buf NULL with len) or -ENOMEM. */
int ctl_http_resp_bytes(ctl_http_resp *resp, unsigned status, const char *content_type,
                        const void *buf, size_t len);

/* Answers status with the first size bytes of the open file fd as
 * content_type, streamed from the file (a recording). The response owns fd
 * from this call on, on error too: it is closed once sent or replaced.
 * A GET answered 200 honours one "Range: bytes=a-b" (also "a-", "-n") of
 * the request: 206 with Content-Range, or 416 when the range starts past
 * the end; several ranges get the whole file. Such responses carry
 * Accept-Ranges: bytes. 0 or -EINVAL (bad status or content type, fd < 0). */
int ctl_http_resp_fd(ctl_http_resp *resp, unsigned status, const char *content_type, int fd,
                     uint64_t size);

/* Adds a header to the response (e.g. WWW-Authenticate, Retry-After),
 * copied. 0; -EINVAL (a CR, LF or NUL in name or value, or a header the
 * server sets itself); -ENOSPC beyond CTL_HTTP_RESP_HEADERS_MAX; -ENOMEM. */
int ctl_http_resp_header(ctl_http_resp *resp, const char *name, const char *value);

#endif
