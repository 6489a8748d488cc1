// A Hotline router plugin in C: direct messages to E.164 numbers, and per-user block
// lists kept in the plugin's kv store.
//
// Commands (hotline-chat command router NAME ARGS...):
//   block +NUMBER     -- messages from +NUMBER to you are rejected
//   unblock +NUMBER   -- undoes it
//   blocked           -- the numbers you blocked, one per line
// kv layout: block/<recipient>/<sender> -> empty value.
// Counters: routed, rejected.
//
// Bindings: `wit-bindgen c --world router` generates router.h / router.c (see build.sh).
// Ownership rules of those bindings (wit-bindgen 0.63):
//   - arguments of an exported function belong to it: free them (the *_free helpers);
//   - what an exported function returns must be heap memory (malloc): the generated
//     post-return functions free it after the host has copied it;
//   - arguments of an imported function stay the caller's; what an import returns
//     (kv get/keys) is the caller's to free.

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router.h"

#define MAX_LISTED 1024
#define COMMANDS "block, unblock, blocked"

// ---- small helpers -------------------------------------------------------------------

// A heap string (router_string_t) formatted like printf. Aborts (a trap) if out of memory.
static void fmt(router_string_t *out, const char *format, ...) {
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

// WIT strings are not NUL-terminated: "%.*s" with these two.
#define S(s) (int)(s).len, (const char *)(s).ptr

static bool str_eq(const router_string_t *s, const char *lit) {
    size_t n = strlen(lit);
    return s->len == n && memcmp(s->ptr, lit, n) == 0;
}

// `+`, then 7 to 15 digits, the first not 0 (as the default router).
static bool is_e164(const router_string_t *s) {
    if (s->len < 8 || s->len > 16 || s->ptr[0] != '+' || s->ptr[1] == '0') return false;
    for (size_t i = 1; i < s->len; i++) {
        if (s->ptr[i] < '0' || s->ptr[i] > '9') return false;
    }
    return true;
}

// "block/<recipient>/<sender>" as a heap byte list (free with router_list_u8_free).
static router_list_u8_t block_key(const router_string_t *recipient, const router_string_t *sender) {
    router_string_t k;
    fmt(&k, "block/%.*s/%.*s", S(*recipient), S(*sender));
    return (router_list_u8_t){k.ptr, k.len};
}

static bool kv_has(router_list_u8_t *key) {
    router_list_u8_t value;
    if (!hotline_plugin_kv_get(key, &value)) return false;
    router_list_u8_free(&value);
    return true;
}

static void counter_add(const char *name, uint64_t n) {
    if (n == 0) return;
    router_string_t s;
    router_string_set(&s, name);  // borrowed: imports do not take ownership
    hotline_plugin_metrics_counter_add(&s, n);
}

static void log_debug(router_string_t *msg) {
    hotline_plugin_log_log(HOTLINE_PLUGIN_LOG_LEVEL_DEBUG, msg);
}

// ---- routing -------------------------------------------------------------------------

static void route_one(const hotline_plugin_types_message_meta_t *m, hotline_plugin_types_destination_t *ret) {
    if (!is_e164(&m->to)) {
        ret->tag = HOTLINE_PLUGIN_TYPES_DESTINATION_REJECT;
        fmt(&ret->val.reject,
            "cannot deliver to \"%.*s\": this router takes E.164 numbers only "
            "(+ and 7-15 digits, like +15551234567)",
            S(m->to));
        return;
    }
    router_list_u8_t key = block_key(&m->to, &m->from);
    bool blocked = kv_has(&key);
    router_list_u8_free(&key);
    if (blocked) {
        ret->tag = HOTLINE_PLUGIN_TYPES_DESTINATION_REJECT;
        fmt(&ret->val.reject, "%.*s does not accept your messages", S(m->to));
        return;
    }
    ret->tag = HOTLINE_PLUGIN_TYPES_DESTINATION_DELIVER;
    router_string_t *to = malloc(sizeof *to);
    if (!to) abort();
    router_string_dup_n(to, (const char *)m->to.ptr, m->to.len);
    ret->val.deliver = (router_list_string_t){to, 1};
}

void exports_hotline_plugin_routing_route(exports_hotline_plugin_routing_message_meta_t *message,
                                          exports_hotline_plugin_routing_destination_t *ret) {
    route_one(message, ret);
    bool delivered = ret->tag == HOTLINE_PLUGIN_TYPES_DESTINATION_DELIVER;
    counter_add(delivered ? "routed" : "rejected", 1);
    exports_hotline_plugin_routing_message_meta_free(message);
}

void exports_hotline_plugin_routing_route_batch(exports_hotline_plugin_routing_list_message_meta_t *messages,
                                                exports_hotline_plugin_routing_list_destination_t *ret) {
    size_t n = messages->len;
    ret->len = n;
    ret->ptr = n ? malloc(n * sizeof *ret->ptr) : NULL;
    if (n && !ret->ptr) abort();
    uint64_t delivered = 0;
    for (size_t i = 0; i < n; i++) {
        route_one(&messages->ptr[i], &ret->ptr[i]);
        if (ret->ptr[i].tag == HOTLINE_PLUGIN_TYPES_DESTINATION_DELIVER) delivered++;
    }
    counter_add("routed", delivered);
    counter_add("rejected", n - delivered);
    exports_hotline_plugin_routing_list_message_meta_free(messages);
}

// ---- lifecycle -----------------------------------------------------------------------

bool exports_hotline_plugin_lifecycle_init(router_string_t *config, router_string_t *err) {
    (void)err;
    router_string_free(config);  // any config is accepted (and ignored)
    return true;
}

// The single E.164 argument of `block`/`unblock`, or false with the error in *err.
static bool number_arg(const hotline_plugin_types_command_t *cmd, const char *usage, router_string_t *err) {
    if (cmd->args.len != 1) {
        fmt(err, "usage: %s", usage);
        return false;
    }
    if (!is_e164(&cmd->args.ptr[0])) {
        fmt(err, "\"%.*s\" is not an E.164 number (+ and 7-15 digits, like +15551234567)", S(cmd->args.ptr[0]));
        return false;
    }
    return true;
}

static bool cmd_block(const hotline_plugin_types_command_t *cmd, router_string_t *ret, router_string_t *err) {
    if (!number_arg(cmd, "block +NUMBER", err)) return false;
    const router_string_t *n = &cmd->args.ptr[0];
    router_list_u8_t key = block_key(&cmd->from, n);
    router_list_u8_t empty = {NULL, 0};
    hotline_plugin_kv_set(&key, &empty);
    router_list_u8_free(&key);
    router_string_t line;
    fmt(&line, "%.*s blocked %.*s", S(cmd->from), S(*n));
    log_debug(&line);
    router_string_free(&line);
    fmt(ret, "blocked %.*s", S(*n));
    return true;
}

static bool cmd_unblock(const hotline_plugin_types_command_t *cmd, router_string_t *ret, router_string_t *err) {
    if (!number_arg(cmd, "unblock +NUMBER", err)) return false;
    const router_string_t *n = &cmd->args.ptr[0];
    router_list_u8_t key = block_key(&cmd->from, n);
    if (!kv_has(&key)) {
        router_list_u8_free(&key);
        fmt(ret, "%.*s was not blocked", S(*n));
        return true;
    }
    hotline_plugin_kv_delete(&key);
    router_list_u8_free(&key);
    router_string_t line;
    fmt(&line, "%.*s unblocked %.*s", S(cmd->from), S(*n));
    log_debug(&line);
    router_string_free(&line);
    fmt(ret, "unblocked %.*s", S(*n));
    return true;
}

static bool cmd_blocked(const hotline_plugin_types_command_t *cmd, router_string_t *ret, router_string_t *err) {
    if (cmd->args.len != 0) {
        fmt(err, "usage: blocked");
        return false;
    }
    router_string_t p;
    fmt(&p, "block/%.*s/", S(cmd->from));
    router_list_u8_t prefix = {p.ptr, p.len};
    router_list_list_u8_t keys;
    hotline_plugin_kv_keys(&prefix, MAX_LISTED, &keys);
    if (keys.len == 0) {
        router_list_u8_free(&prefix);
        router_list_list_u8_free(&keys);
        fmt(ret, "nobody is blocked");
        return true;
    }
    // One number per line: each key without the prefix.
    size_t total = 0;
    for (size_t i = 0; i < keys.len; i++) total += keys.ptr[i].len - prefix.len + 1;
    char *out = malloc(total);
    if (!out) abort();
    size_t at = 0;
    for (size_t i = 0; i < keys.len; i++) {
        size_t n = keys.ptr[i].len - prefix.len;
        memcpy(out + at, keys.ptr[i].ptr + prefix.len, n);
        at += n;
        if (i + 1 < keys.len) out[at++] = '\n';
    }
    ret->ptr = (uint8_t *)out;
    ret->len = at;
    router_list_u8_free(&prefix);
    router_list_list_u8_free(&keys);
    return true;
}

bool exports_hotline_plugin_lifecycle_handle_command(exports_hotline_plugin_lifecycle_command_t *command,
                                                     router_string_t *ret, router_string_t *err) {
    bool ok;
    if (str_eq(&command->name, "block")) {
        ok = cmd_block(command, ret, err);
    } else if (str_eq(&command->name, "unblock")) {
        ok = cmd_unblock(command, ret, err);
    } else if (str_eq(&command->name, "blocked")) {
        ok = cmd_blocked(command, ret, err);
    } else {
        fmt(err, "unknown command \"%.*s\"; this router knows " COMMANDS, S(command->name));
        ok = false;
    }
    exports_hotline_plugin_lifecycle_command_free(command);
    return ok;
}
