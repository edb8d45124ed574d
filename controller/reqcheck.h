/* Validation of API request bodies against a table of fields (issue 3).
 *
 * Every endpoint that takes a body describes it as a table of ctl_field;
 * ctl_check_body refuses unknown fields, missing required ones, wrong types
 * and values out of range, and names the field in its message, so that the
 * API's 422 answers are uniform. Pure code: no allocation, no globals,
 * thread safe; fuzzed by tests/fuzz/fuzz_api_body.c. */
#ifndef CTL_REQCHECK_H
#define CTL_REQCHECK_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

typedef enum {
    CTL_F_STRING,  /* min..max bytes of UTF-8 without control bytes */
    CTL_F_TEXT,    /* as CTL_F_STRING, but tab and newline allowed (notes) */
    CTL_F_BOOL,    /* true or false */
    CTL_F_INT,     /* an integer in [min, max] */
    CTL_F_NUMBER,  /* a finite number in [min, max] */
    CTL_F_ID,      /* an object id: an integer in [1, 2^53] */
    CTL_F_OBJECT,  /* a JSON object (checked by the endpoint) */
    CTL_F_ARRAY,   /* an array of min..max elements (checked by the endpoint) */
    CTL_F_STRINGS, /* an array of min..max strings of 1..64 bytes (STRING rules) */
    CTL_F_IDS,     /* an array of min..max distinct ids */
} ctl_ftype;

typedef struct {
    const char *name;
    ctl_ftype type;
    bool required;
    /* CTL_F_STRING/TEXT: bytes; INT/NUMBER: value; ARRAY/STRINGS/IDS:
     * elements. min 0 and max 0 together mean "no bound" for numbers only;
     * strings and arrays always give max. */
    double min, max;
    /* CTL_F_STRING: the accepted values (NULL-terminated list), or NULL. */
    const char *const *choices;
    /* true: JSON null is accepted as "none" (clears an optional field). */
    bool nullable;
} ctl_field;

/* Longest message of a refusal. */
#define CTL_CHECK_MSG_MAX 192

typedef struct {
    const char *code; /* "unknown_field", "missing_field" or "invalid_field" */
    char message[CTL_CHECK_MSG_MAX];
} ctl_check_err;

/* Checks body (a JSON object, or NULL for an absent body = {}) against the
 * n fields of f. 0 if it fits; 1 with *err filled (the answer is 422) for
 * the first problem found: an unknown field, then fields in table order.
 * Field names quoted in messages are made safe for a JSON string (bytes
 * outside printable ASCII, '"' and '\\' shown as '?', at most 64 bytes). */
int ctl_check_body(const cJSON *body, const ctl_field *f, size_t n, ctl_check_err *err);

/* As ctl_check_body, but no field is required: a change (PUT) checked
 * against the table of the object's fields. */
int ctl_check_body_partial(const cJSON *body, const ctl_field *f, size_t n, ctl_check_err *err);

/* Checks one value against one field description (used for nested objects
 * by endpoints): 0 or 1 with *err filled; path names it in messages. */
int ctl_check_value(const cJSON *v, const ctl_field *f, const char *path, ctl_check_err *err);

/* 1 if s is valid UTF-8 without control bytes (allow_ws: tab, LF and CR
 * allowed), else 0. */
int ctl_check_text(const char *s, int allow_ws);

#define CTL_FIELDS(table) (table), (sizeof(table) / sizeof((table)[0]))

#endif
