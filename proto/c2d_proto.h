/* The wire contract between c2d-agent and c2d-controller (see proto/README.md).
 *
 * Pure code: no sockets, no logging, no allocation that is not handed back to
 * the caller. Every decoder validates everything a peer controls. */
#ifndef C2D_PROTO_H
#define C2D_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define C2D_PROTO_VERSION 1

/* Device ids become directory names in the controller's store, so they are
 * restricted to a safe alphabet and length (see c2d_device_id_valid). */
#define C2D_DEVICE_ID_MAX 64

/* Bytes of the fixed binary header in front of every chunk. */
#define C2D_CHUNK_HEADER_LEN 32

/* Largest chunk payload accepted: 4x the default chunk size, so a peer can
 * never make either side buffer more than this per message. */
#define C2D_CHUNK_MAX (1u << 20)

/* Largest integer a JSON message carries exactly (an IEEE double's 2^53).
 * Starts, sizes and offsets are bound by it on every path, chunk frames
 * included, so that whatever a receiver accepts it can also answer. */
#define C2D_INT_MAX (INT64_C(1) << 53)

/* A control message is small JSON; anything longer is refused unparsed. */
#define C2D_MSG_MAX 4096

/* Room for a topic: "c2d/v1/d/" + id + "/state" + NUL, the longest of
 * both namespaces ("c2d/v1/pair/" + serial + "/resp" + NUL is 82). */
#define C2D_TOPIC_MAX 96

/* Ids starting with this, in any case, belong to services (the controller's
 * certificate CN is "c2d-controller", and its broker user may write all of
 * c2d/v1/#): no device id or serial on a topic that leads to a certificate
 * may take one. Same value as C2D_PKI_RESERVED_PREFIX. */
#define C2D_RESERVED_ID_PREFIX "c2d-"

typedef enum {
    C2D_OK = 0,
    C2D_ERR_TRUNCATED, /* buffer shorter than its header or declared length */
    C2D_ERR_MAGIC,     /* not a chunk frame */
    C2D_ERR_VERSION,   /* protocol version this side does not speak */
    C2D_ERR_CRC,       /* chunk payload does not match its CRC-32 */
    C2D_ERR_LENGTH,    /* declared length too large or inconsistent */
    C2D_ERR_JSON,      /* not JSON, or not a JSON object */
    C2D_ERR_FIELD,     /* a required field is missing or has the wrong type */
    C2D_ERR_RANGE,     /* a number is outside its allowed range */
    C2D_ERR_TOPIC,     /* topic outside the c2d/v1 namespace or malformed */
    C2D_ERR_NAME,      /* an id or name outside the safe alphabet */
    C2D_ERR_TYPE,      /* unknown message type */
    C2D_ERR_NOMEM,
    C2D_ERR_BUFFER, /* caller's output buffer too small */
} c2d_status;

/* Human readable description of a status. Never NULL. */
const char *c2d_strerror(c2d_status st);
/* Short machine-readable reason used in rejected acks ("bad_crc", ...). */
const char *c2d_reason(c2d_status st);

/* ---- Topics ------------------------------------------------------------ */

typedef enum {
    C2D_TOPIC_SEG,   /* agent -> controller: begin, chunks, end */
    C2D_TOPIC_ACK,   /* controller -> agent: acks and resume offsets */
    C2D_TOPIC_CFG,   /* controller -> agent: retained device config */
    C2D_TOPIC_STATE, /* agent -> all: retained online/offline and health */
    C2D_TOPIC_EVT,   /* agent -> controller: events */
    C2D_TOPIC_CSR,   /* agent -> controller: certificate renewal request */
    C2D_TOPIC_CERT,  /* controller -> agent: the renewal's answer */
} c2d_topic_kind;

/* The pairing listener's topics, c2d/v1/pair/{serial}/{kind}. */
typedef enum {
    C2D_PAIR_REQ,  /* agent -> controller: {"code","csr"} */
    C2D_PAIR_RESP, /* controller -> agent: the answer */
} c2d_pair_kind;

/* 1 if id is 1..C2D_DEVICE_ID_MAX chars of [A-Za-z0-9_.-], does not start
 * with '.' or '-' (so never "." or ".." and never an option), else 0. */
int c2d_device_id_valid(const char *id);

/* 1 if id starts with C2D_RESERVED_ID_PREFIX in any case, else 0 (also for
 * NULL). */
int c2d_id_reserved(const char *id);

/* 1 if the n bytes at buf are strict UTF-8: no NUL, overlong form,
 * surrogate or code point past U+10FFFF; else 0. */
int c2d_utf8_valid(const void *buf, size_t n);

/* Parses "c2d/v1/d/{device}/{kind}": exactly these levels, no extra one, no
 * wildcard. On success writes device (NUL terminated) and kind. Errors:
 * C2D_ERR_TOPIC (shape, empty id or unknown kind), C2D_ERR_NAME (device id
 * not c2d_device_id_valid, or c2d_id_reserved with C2D_TOPIC_CSR or
 * C2D_TOPIC_CERT: those mint a certificate for the id). */
c2d_status c2d_topic_parse(const char *topic, char device[C2D_DEVICE_ID_MAX + 1],
                           c2d_topic_kind *kind);

/* Writes the topic for device and kind; whatever it writes parses back to
 * device and kind. Errors: C2D_ERR_NAME (as for c2d_topic_parse),
 * C2D_ERR_TOPIC (unknown kind), C2D_ERR_BUFFER. */
c2d_status c2d_topic_format(char *buf, size_t len, const char *device, c2d_topic_kind kind);

/* Parses "c2d/v1/pair/{serial}/{req|resp}" as c2d_topic_parse does the
 * device namespace. A serial follows the device id rules (it is the CSR's
 * CN and a broker client id) and is never c2d_id_reserved. Errors:
 * C2D_ERR_TOPIC (shape, empty serial or unknown kind), C2D_ERR_NAME. */
c2d_status c2d_pair_topic_parse(const char *topic, char serial[C2D_DEVICE_ID_MAX + 1],
                                c2d_pair_kind *kind);

/* Writes the pairing topic for serial and kind. Errors: C2D_ERR_NAME,
 * C2D_ERR_TOPIC (unknown kind), C2D_ERR_BUFFER. */
c2d_status c2d_pair_topic_format(char *buf, size_t len, const char *serial, c2d_pair_kind kind);

/* ---- Chunk frames (binary, on the seg topic) --------------------------- */

typedef struct {
    uint16_t channel;
    int64_t start_us;    /* segment start, microseconds since the Unix epoch */
    uint64_t offset;     /* byte offset of data within the segment */
    uint32_t length;     /* bytes of data */
    uint32_t crc32;      /* zlib CRC-32 of data */
    const uint8_t *data; /* points into the decoded buffer */
} c2d_chunk;

/* 1 if buf starts like a chunk frame (magic), 0 otherwise (JSON message). */
int c2d_is_chunk(const uint8_t *buf, size_t len);

/* Writes the 32-byte header for a chunk of data (CRC computed here). */
void c2d_chunk_header_encode(uint8_t out[C2D_CHUNK_HEADER_LEN], uint16_t channel, int64_t start_us,
                             uint64_t offset, const uint8_t *data, uint32_t length);

/* Decodes and validates a whole frame (header + payload). out->data points
 * into buf. Errors: C2D_ERR_TRUNCATED, C2D_ERR_MAGIC, C2D_ERR_VERSION,
 * C2D_ERR_FIELD (flags not 0), C2D_ERR_LENGTH (over C2D_CHUNK_MAX or
 * trailing bytes), C2D_ERR_RANGE (negative start, offset+length over
 * INT64_MAX), C2D_ERR_CRC. If the header
 * could be read, out->channel and out->start_us are filled even on error so
 * the receiver can address its rejection. */
c2d_status c2d_chunk_decode(const uint8_t *buf, size_t len, c2d_chunk *out);

/* ---- Control messages (JSON) ------------------------------------------- */

typedef enum {
    C2D_MSG_BEGIN, /* agent: a segment is about to be sent (or resumed) */
    C2D_MSG_END,   /* agent: all bytes sent, please commit */
    C2D_MSG_ACK,   /* controller: answer about one segment */
} c2d_msg_type;

typedef enum {
    C2D_ACK_OFFSET,    /* bytes [0, offset) received; send from offset */
    C2D_ACK_COMMITTED, /* durable: file fsync'd and ledger committed */
    C2D_ACK_DUPLICATE, /* already durable from an earlier upload */
    C2D_ACK_REJECTED,  /* refused: see reason; offset says where to resume */
} c2d_ack_status;

#define C2D_REASON_MAX 64

typedef struct {
    c2d_msg_type type;
    int version;
    uint16_t channel;
    int64_t start_us;
    /* begin */
    int64_t duration_us;
    uint64_t size;
    char sha256[65]; /* lowercase hex */
    /* ack */
    c2d_ack_status status;
    uint64_t offset;
    char reason[C2D_REASON_MAX]; /* empty unless rejected */
} c2d_msg;

/* Decodes a JSON control message of at most C2D_MSG_MAX bytes (need not be
 * NUL terminated; NUL bytes or anything after the object are refused; an ack
 * reason must be printable ASCII shorter than C2D_REASON_MAX). Errors: C2D_ERR_LENGTH,
 * C2D_ERR_JSON, C2D_ERR_VERSION (out->version is set), C2D_ERR_TYPE, C2D_ERR_FIELD, C2D_ERR_RANGE.
 */
c2d_status c2d_msg_decode(const char *json, size_t len, c2d_msg *out);

/* Encodes m as JSON (with "v" = C2D_PROTO_VERSION). Returns a malloc'd NUL
 * terminated string the caller frees, or NULL on allocation failure. */
char *c2d_msg_encode(const c2d_msg *m);

/* Names of enum values as they appear on the wire. */
const char *c2d_ack_status_name(c2d_ack_status s);

#endif
