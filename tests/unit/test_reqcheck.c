/* Unit tests for controller/reqcheck.c: each refusal with its code and the
 * field it names; text rules (UTF-8, control bytes); arrays of strings and
 * ids; nullable fields; duplicate keys. */
#include "check.h"
#include "controller/reqcheck.h"

#include <stdio.h>
#include <string.h>

static const char *const colours[] = {"red", "green", NULL};

static const ctl_field table[] = {
    {"name", CTL_F_STRING, true, 1, 8, NULL, false},
    {"note", CTL_F_TEXT, false, 0, 16, NULL, true},
    {"on", CTL_F_BOOL, false, 0, 0, NULL, false},
    {"count", CTL_F_INT, false, 1, 64, NULL, false},
    {"ratio", CTL_F_NUMBER, false, -1, 1, NULL, false},
    {"parent", CTL_F_ID, false, 0, 0, NULL, false},
    {"shape", CTL_F_OBJECT, false, 0, 0, NULL, false},
    {"tags", CTL_F_STRINGS, false, 0, 3, NULL, false},
    {"ids", CTL_F_IDS, false, 1, 3, NULL, false},
    {"colour", CTL_F_STRING, false, 1, 8, colours, false},
};

/* Checks body text against the table: expected code (NULL: accepted) and a
 * fragment the message must hold. */
static void expect(const char *json, const char *code, const char *fragment)
{
    cJSON *body = cJSON_Parse(json);
    if (!body) {
        fprintf(stderr, "bad test JSON: %s\n", json);
        failures++;
        return;
    }
    ctl_check_err e = {0};
    int rc = ctl_check_body(body, CTL_FIELDS(table), &e);
    if (!code) {
        if (rc != 0)
            fprintf(stderr, "refused %s: %s\n", json, e.message);
        CHECK(rc == 0);
    } else {
        CHECK(rc == 1);
        if (rc == 1) {
            if (strcmp(e.code, code) != 0 || !strstr(e.message, fragment))
                fprintf(stderr, "%s: got %s \"%s\", want %s \"%s\"\n", json, e.code, e.message,
                        code, fragment);
            CHECK(strcmp(e.code, code) == 0);
            CHECK(strstr(e.message, fragment) != NULL);
        }
    }
    cJSON_Delete(body);
}

int main(void)
{
    expect("{\"name\":\"a\"}", NULL, NULL);
    expect("{\"name\":\"abcdefgh\",\"note\":\"l1\\nl2\",\"on\":true,\"count\":64,\"ratio\":-0.5,"
           "\"parent\":9007199254740992,\"shape\":{},\"tags\":[\"x\",\"y\"],\"ids\":[1,2],"
           "\"colour\":\"red\"}",
           NULL, NULL);
    expect("{\"name\":\"a\",\"note\":null}", NULL, NULL);
    expect("{}", "missing_field", "\"name\"");
    expect("{\"name\":\"a\",\"extra\":1}", "unknown_field", "\"extra\"");
    expect("{\"name\":\"a\",\"na\\\"me\":1}", "unknown_field", "na?me");
    expect("{\"name\":\"a\",\"name\":\"b\"}", "invalid_field", "twice");
    expect("{\"name\":7}", "invalid_field", "\"name\" must be a string");
    expect("{\"name\":\"\"}", "invalid_field", "empty");
    expect("{\"name\":\"abcdefghi\"}", "invalid_field", "longer than 8");
    expect("{\"name\":\"a\\tb\"}", "invalid_field", "control characters");
    expect("{\"name\":\"a\\u0085\"}", "invalid_field", "control characters");
    expect("{\"name\":\"caf\\u00e9\"}", NULL, NULL);
    expect("{\"name\":null}", "invalid_field", "\"name\" must be a string");
    expect("{\"name\":\"a\",\"on\":1}", "invalid_field", "true or false");
    expect("{\"name\":\"a\",\"count\":1.5}", "invalid_field", "integer");
    expect("{\"name\":\"a\",\"count\":65}", "invalid_field", "between 1 and 64");
    expect("{\"name\":\"a\",\"count\":\"3\"}", "invalid_field", "must be a number");
    expect("{\"name\":\"a\",\"ratio\":2}", "invalid_field", "between -1 and 1");
    expect("{\"name\":\"a\",\"parent\":0}", "invalid_field", "must be an id");
    expect("{\"name\":\"a\",\"parent\":9007199254740994}", "invalid_field", "must be an id");
    expect("{\"name\":\"a\",\"shape\":[]}", "invalid_field", "must be an object");
    expect("{\"name\":\"a\",\"tags\":[\"a\",\"b\",\"c\",\"d\"]}", "invalid_field",
           "0 to 3 elements");
    expect("{\"name\":\"a\",\"tags\":[\"a\",3]}", "invalid_field", "\"tags[1]\"");
    expect("{\"name\":\"a\",\"tags\":[\"\"]}", "invalid_field", "\"tags[0]\" is empty");
    expect("{\"name\":\"a\",\"ids\":[]}", "invalid_field", "1 to 3 elements");
    expect("{\"name\":\"a\",\"ids\":[4,4]}", "invalid_field", "\"ids[1]\" repeats");
    expect("{\"name\":\"a\",\"ids\":[-1]}", "invalid_field", "\"ids[0]\" must be an id");
    expect("{\"name\":\"a\",\"colour\":\"blue\"}", "invalid_field", "one of: red, green");

    /* Text rules on raw bytes (the HTTP layer refuses non-UTF-8 bodies, but
     * endpoints also check strings they build). */
    CHECK(ctl_check_text("plain", 0));
    CHECK(ctl_check_text("\xc3\xa9t\xc3\xa9", 0));
    CHECK(ctl_check_text("\xf0\x9f\x93\xb9", 0));  /* U+1F4F9 */
    CHECK(!ctl_check_text("\xc3", 0));             /* truncated */
    CHECK(!ctl_check_text("\xc0\xaf", 0));         /* overlong '/' */
    CHECK(!ctl_check_text("\xe0\x80\xaf", 0));     /* overlong '/' */
    CHECK(!ctl_check_text("\xed\xa0\x80", 0));     /* surrogate */
    CHECK(!ctl_check_text("\xf4\x90\x80\x80", 0)); /* above U+10FFFF */
    CHECK(!ctl_check_text("\xff", 0));
    CHECK(!ctl_check_text("a\x7f", 0));
    CHECK(!ctl_check_text("a\nb", 0));
    CHECK(ctl_check_text("a\nb\tc\r", 1));
    CHECK(!ctl_check_text("a\x01", 1));

    /* A body that is not an object. */
    cJSON *arr = cJSON_Parse("[1]");
    ctl_check_err e = {0};
    CHECK(ctl_check_body(arr, CTL_FIELDS(table), &e) == 1);
    cJSON_Delete(arr);
    /* No body: the empty object. */
    static const ctl_field optional[] = {{"x", CTL_F_BOOL, false, 0, 0, NULL, false}};
    CHECK(ctl_check_body(NULL, CTL_FIELDS(optional), &e) == 0);
    CHECK(ctl_check_body(NULL, CTL_FIELDS(table), &e) == 1 && strcmp(e.code, "missing_field") == 0);

    if (failures)
        fprintf(stderr, "%d failure(s)\n", failures);
    return failures ? 1 : 0;
}
