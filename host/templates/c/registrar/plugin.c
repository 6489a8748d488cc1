// {{name}}: a Hotline registrar plugin in C. It decides who may register a phone number.
//
// Registration takes two calls: request-code(phone) sends a 6-digit code by SMS, and
// verify-code(phone, code) checks what the person typed. The pending code lives in the
// plugin's kv store under "code/<phone>" as "<code>:<expires_ms>:<attempts>": the broker
// runs several instances at once, so nothing may be kept in memory between calls (the
// broker makes registrar calls one at a time, so the read-modify-write below is safe).
// A code is valid for 10 minutes and allows 5 wrong tries.
// Counters: codes_sent, verified. Command: hello.
//
// How C maps to the contract (wit/plugin.wit, world {{slot}}): build.sh runs
// `wit-bindgen c --world {{slot}}`, which writes build/gen/{{slot}}.h (read it: every type
// and function is there) and build/gen/{{slot}}.c.
//   - What the broker provides (imports) are functions named hotline_plugin_<interface>_<name>,
//     e.g. hotline_plugin_kv_get(&key, &value). An `option` result becomes a bool return
//     (true = some) with the value in the last argument.
//   - What the plugin provides (exports) are functions this file defines, named
//     exports_hotline_plugin_<interface>_<name>. A WIT `result` becomes a bool return
//     (true = ok) with the ok value in *ret and the error in *err.
//   - A WIT string is registrar_string_t {ptr, len}: UTF-8, NOT NUL-terminated;
//     list<u8> is registrar_list_u8_t, the same shape.
//
// Ownership rules of the generated bindings (wit-bindgen 0.63):
//   - arguments of an exported function belong to it: free them (the *_free helpers);
//   - what an exported function returns (in *ret or *err) must be heap memory (malloc):
//     the generated post-return functions free it after the host has copied it;
//   - arguments of an imported function stay the caller's; what an import returns
//     (kv get, the error of sms send) is the caller's to free.
// A trap (abort(), a bad pointer) makes the call fail: see README.md for what happens then.

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "registrar.h"

#define VALID_SECS 600   // how long a code is valid
#define MAX_ATTEMPTS 5   // wrong codes allowed before the code is dropped

typedef exports_hotline_plugin_registration_refusal_t refusal_t;

// ---- small helpers -------------------------------------------------------------------

// Sets *out to a heap string formatted like printf. Aborts (a trap) if out of memory.
static void fmt(registrar_string_t *out, const char *format, ...) {
    va_list ap;
    va_start(ap, format);
    int n = vsnprintf(NULL, 0, format, ap);
    va_end(ap);
    if (n < 0) abort();
    char *buf = malloc((size_t)n + 1);
    if (!buf) abort();
    va_start(ap, format);
    vsnprintf(buf, (size_t)n + 1, format, ap);
    va_end(ap);
    out->ptr = (uint8_t *)buf;
    out->len = (size_t)n;
}

// WIT strings are not NUL-terminated: print them with "%.*s" and S(s).
#define S(s) (int)(s).len, (const char *)(s).ptr

static bool str_eq(const registrar_string_t *s, const char *lit) {
    size_t n = strlen(lit);
    return s->len == n && memcmp(s->ptr, lit, n) == 0;
}

// `+`, then 7 to 15 digits, the first not 0.
static bool is_e164(const registrar_string_t *s) {
    if (s->len < 8 || s->len > 16 || s->ptr[0] != '+' || s->ptr[1] == '0') return false;
    for (size_t i = 1; i < s->len; i++) {
        if (s->ptr[i] < '0' || s->ptr[i] > '9') return false;
    }
    return true;
}

static void counter_add(const char *name, uint64_t n) {
    registrar_string_t s;
    registrar_string_set(&s, name);  // points at the literal: imports do not take ownership
    hotline_plugin_metrics_counter_add(&s, n);
}

static void log_info(const char *message) {
    registrar_string_t s;
    registrar_string_set(&s, message);
    hotline_plugin_log_log(HOTLINE_PLUGIN_LOG_LEVEL_INFO, &s);
}

// ---- the pending code in kv ----------------------------------------------------------

typedef struct {
    uint64_t code;
    uint64_t expires_ms;
    uint32_t attempts;
} pending_t;

// "code/<phone>" as heap bytes (free with registrar_list_u8_free).
static registrar_list_u8_t code_key(const registrar_string_t *phone) {
    registrar_string_t k;
    fmt(&k, "code/%.*s", S(*phone));
    return (registrar_list_u8_t){k.ptr, k.len};
}

// Reads the pending code; false if there is none (an unreadable entry counts as none).
static bool load_pending(registrar_list_u8_t *key, pending_t *p) {
    registrar_list_u8_t value;
    if (!hotline_plugin_kv_get(key, &value)) return false;
    char text[64];  // a NUL-terminated copy for sscanf
    bool ok = value.len < sizeof text;
    if (ok) {
        memcpy(text, value.ptr, value.len);
        text[value.len] = '\0';
        ok = sscanf(text, "%" SCNu64 ":%" SCNu64 ":%" SCNu32, &p->code, &p->expires_ms, &p->attempts) == 3;
    }
    registrar_list_u8_free(&value);  // what an import returns is ours to free
    return ok;
}

static void store_pending(registrar_list_u8_t *key, const pending_t *p) {
    registrar_string_t text;
    fmt(&text, "%" PRIu64 ":%" PRIu64 ":%" PRIu32, p->code, p->expires_ms, p->attempts);
    registrar_list_u8_t value = {text.ptr, text.len};
    hotline_plugin_kv_set(key, &value);
    registrar_list_u8_free(&value);
}

// ---- lifecycle -----------------------------------------------------------------------

// Called on every new instance (the broker keeps several) before any other call, with the
// slot's config text from the broker's config file. This plugin needs none.
bool exports_hotline_plugin_lifecycle_init(registrar_string_t *config, registrar_string_t *err) {
    (void)err;
    registrar_string_free(config);
    log_info("{{name}} started");
    return true;
}

// A client's command: `hotline-chat command {{slot}} NAME ARGS...`.
bool exports_hotline_plugin_lifecycle_handle_command(exports_hotline_plugin_lifecycle_command_t *command,
                                                     registrar_string_t *ret, registrar_string_t *err) {
    bool ok;
    if (str_eq(&command->name, "hello")) {
        fmt(ret, "hello from {{name}} ({{lang}} {{slot}})");
        ok = true;
    } else {
        fmt(err, "unknown command \"%.*s\"; {{name}} knows: hello", S(command->name));
        ok = false;
    }
    exports_hotline_plugin_lifecycle_command_free(command);
    return ok;
}

// ---- registration --------------------------------------------------------------------

// Sends a code to phone; *ret = its validity in seconds. Does not free phone.
static bool request_code(registrar_string_t *phone, uint32_t *ret, refusal_t *err) {
    if (!is_e164(phone)) {
        err->kind = HOTLINE_PLUGIN_TYPES_REFUSAL_KIND_REJECTED;
        fmt(&err->reason, "%.*s is not an E.164 number", S(*phone));
        return false;
    }
    pending_t p = {
        .code = 100000 + hotline_plugin_random_next_u64() % 900000,  // 6 digits
        .expires_ms = hotline_plugin_clock_now_ms() + VALID_SECS * 1000ull,
        .attempts = 0,
    };
    registrar_list_u8_t key = code_key(phone);
    store_pending(&key, &p);

    registrar_string_t text, sms_err;
    fmt(&text, "Your {{name}} code is %" PRIu64 ". It expires in 10 minutes.", p.code);
    bool sent = hotline_plugin_sms_send(phone, &text, &sms_err);
    registrar_string_free(&text);
    if (sent) {
        counter_add("codes_sent", 1);
        *ret = VALID_SECS;
    } else {
        hotline_plugin_kv_delete(&key);
        err->kind = HOTLINE_PLUGIN_TYPES_REFUSAL_KIND_UNAVAILABLE;
        fmt(&err->reason, "could not send the SMS: %.*s", S(sms_err));
        registrar_string_free(&sms_err);
    }
    registrar_list_u8_free(&key);
    return sent;
}

static bool code_expired(const registrar_string_t *phone, refusal_t *err) {
    err->kind = HOTLINE_PLUGIN_TYPES_REFUSAL_KIND_CODE_EXPIRED;
    fmt(&err->reason, "no code was requested for %.*s, or it expired", S(*phone));
    return false;
}

// Checks code for phone, whose pending code is under key. Does not free its arguments.
static bool verify_code(registrar_list_u8_t *key, registrar_string_t *phone, registrar_string_t *code,
                        refusal_t *err) {
    pending_t p;
    if (!load_pending(key, &p)) return code_expired(phone, err);
    if (hotline_plugin_clock_now_ms() >= p.expires_ms) {
        hotline_plugin_kv_delete(key);
        return code_expired(phone, err);
    }
    char expected[24];
    snprintf(expected, sizeof expected, "%" PRIu64, p.code);
    if (str_eq(code, expected)) {
        hotline_plugin_kv_delete(key);  // a code works once
        counter_add("verified", 1);
        return true;
    }
    p.attempts++;
    if (p.attempts >= MAX_ATTEMPTS) {
        hotline_plugin_kv_delete(key);
        err->kind = HOTLINE_PLUGIN_TYPES_REFUSAL_KIND_RATE_LIMITED;
        fmt(&err->reason, "too many wrong codes; request a new one");
        return false;
    }
    store_pending(key, &p);
    err->kind = HOTLINE_PLUGIN_TYPES_REFUSAL_KIND_WRONG_CODE;
    fmt(&err->reason, "wrong code");
    return false;
}

// The exports: each calls the function above, then frees its arguments (they are ours).
bool exports_hotline_plugin_registration_request_code(registrar_string_t *phone, uint32_t *ret, refusal_t *err) {
    bool ok = request_code(phone, ret, err);
    registrar_string_free(phone);
    return ok;
}

// On success the broker registers the number (and issues its key).
bool exports_hotline_plugin_registration_verify_code(registrar_string_t *phone, registrar_string_t *code,
                                                     refusal_t *err) {
    registrar_list_u8_t key = code_key(phone);
    bool ok = verify_code(&key, phone, code, err);
    registrar_list_u8_free(&key);
    registrar_string_free(phone);
    registrar_string_free(code);
    return ok;
}
