/* Table-driven JSON configuration: one table of keys per object with type,
 * default, bounds and the offset of the field it fills. Errors name the
 * file, the key and why. Unknown keys are errors (they are usually typos). */
#ifndef C2D_CONFIG_H
#define C2D_CONFIG_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    C2D_CFG_STRING, /* char * (malloc'd; free with c2d_cfg_free_strings) */
    C2D_CFG_INT,    /* int64_t */
    C2D_CFG_BOOL,   /* int */
    C2D_CFG_SKIP,   /* handled by the caller (objects, arrays) */
} c2d_cfg_type;

typedef struct {
    const char *key;
    c2d_cfg_type type;
    size_t offset;
    int required;
    int64_t min, max;    /* C2D_CFG_INT bounds */
    int64_t def_int;     /* default for INT and BOOL */
    const char *def_str; /* default for STRING (NULL = none) */
} c2d_cfg_field;

#define C2D_ERRMSG_MAX 256

/* Parses a JSON file of at most 1 MiB. NULL with err filled on failure. */
cJSON *c2d_cfg_parse_file(const char *path, char *err, size_t errlen);

/* Fills base from obj by the table. where names the object in errors (e.g.
 * "config.json: broker"). Returns 0, or -1 with err set. Strings already
 * filled in base are not freed: call on zeroed structs. */
int c2d_cfg_apply(const cJSON *obj, const char *where, const c2d_cfg_field *fields, size_t n,
                  void *base, char *err, size_t errlen);

/* Frees every C2D_CFG_STRING of the table in base. */
void c2d_cfg_free_strings(const c2d_cfg_field *fields, size_t n, void *base);

/* Broker connection settings, shared by agent and controller. */
typedef struct {
    char *host;
    int64_t port;
    char *ca_file;
    char *cert_file;
    char *key_file;
    int64_t keepalive_s;
    char *client_id;
} c2d_broker_cfg;

/* Loads the "broker" object (obj may be NULL: error "missing"). host and
 * the three files must not be empty. Returns 0, or -1 with err set. */
int c2d_broker_cfg_load(const cJSON *obj, const char *where, c2d_broker_cfg *out, char *err,
                        size_t errlen);
/* Makes ca_file, cert_file and key_file absolute against base. */
int c2d_broker_cfg_resolve(c2d_broker_cfg *b, const char *base, const char *where, char *err,
                           size_t errlen);
void c2d_broker_cfg_free(c2d_broker_cfg *b);

/* Relative paths in a configuration file are relative to the file's own
 * directory, so a program behaves the same whatever its working directory.
 * c2d_cfg_base_dir writes that directory (absolute, PATH_MAX bytes);
 * c2d_cfg_resolve_path replaces a relative non-empty *p by base/ *p. Both
 * return 0, or -1 with err naming where and key. */
int c2d_cfg_base_dir(const char *config_path, char *base, char *err, size_t errlen);
int c2d_cfg_resolve_path(char **p, const char *base, const char *where, const char *key, char *err,
                         size_t errlen);

#endif
