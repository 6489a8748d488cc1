// {{name}}: a Hotline router plugin in C. It decides where each message goes.
//
// This one delivers a message addressed to an E.164 number (like +15551234567) to that
// number, and rejects anything else. Counters: routed, rejected. Command: hello.
//
// How C maps to the contract (wit/plugin.wit, world {{slot}}): build.sh runs
// `wit-bindgen c --world {{slot}}`, which writes build/gen/{{slot}}.h (read it: every type
// and function is there) and build/gen/{{slot}}.c.
//   - What the broker provides (imports) are functions named hotline_plugin_<interface>_<name>,
//     e.g. hotline_plugin_metrics_counter_add(&name, 1).
//   - What the plugin provides (exports) are functions this file defines, named
//     exports_hotline_plugin_<interface>_<name>. A WIT `result` becomes a bool return
//     (true = ok) with the ok value in *ret and the error in *err.
//   - A WIT string is router_string_t {ptr, len}: UTF-8, NOT NUL-terminated. A variant
//     (destination) is a struct with a tag and a union val.
//
// Ownership rules of the generated bindings (wit-bindgen 0.63):
//   - arguments of an exported function belong to it: free them (the *_free helpers);
//   - what an exported function returns (in *ret or *err) must be heap memory (malloc):
//     the generated post-return functions free it after the host has copied it;
//   - arguments of an imported function stay the caller's; what an import returns is the
//     caller's to free.
// A trap (abort(), a bad pointer) makes the call fail: see README.md for what happens then.

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router.h"

// ---- small helpers -------------------------------------------------------------------

// Sets *out to a heap string formatted like printf. Aborts (a trap) if out of memory.
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

// WIT strings are not NUL-terminated: print them with "%.*s" and S(s).
#define S(s) (int)(s).len, (const char *)(s).ptr

static bool str_eq(const router_string_t *s, const char *lit) {
    size_t n = strlen(lit);
    return s->len == n && memcmp(s->ptr, lit, n) == 0;
}

// `+`, then 7 to 15 digits, the first not 0.
static bool is_e164(const router_string_t *s) {
    if (s->len < 8 || s->len > 16 || s->ptr[0] != '+' || s->ptr[1] == '0') return false;
    for (size_t i = 1; i < s->len; i++) {
        if (s->ptr[i] < '0' || s->ptr[i] > '9') return false;
    }
    return true;
}

static void counter_add(const char *name, uint64_t n) {
    router_string_t s;
    router_string_set(&s, name);  // points at the literal: imports do not take ownership
    hotline_plugin_metrics_counter_add(&s, n);
}

static void log_info(const char *message) {
    router_string_t s;
    router_string_set(&s, message);
    hotline_plugin_log_log(HOTLINE_PLUGIN_LOG_LEVEL_INFO, &s);
}

// ---- lifecycle -----------------------------------------------------------------------

// Called on every new instance (the broker keeps several) before any other call, with the
// slot's config text from the broker's config file. This plugin needs none.
bool exports_hotline_plugin_lifecycle_init(router_string_t *config, router_string_t *err) {
    (void)err;
    router_string_free(config);
    log_info("{{name}} started");
    return true;
}

// A client's command: `hotline-chat command {{slot}} NAME ARGS...`.
bool exports_hotline_plugin_lifecycle_handle_command(exports_hotline_plugin_lifecycle_command_t *command,
                                                     router_string_t *ret, router_string_t *err) {
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

// ---- routing -------------------------------------------------------------------------

// Fills *ret for one message (does not free it).
static void route_one(const hotline_plugin_types_message_meta_t *m, hotline_plugin_types_destination_t *ret) {
    if (!is_e164(&m->to)) {
        counter_add("rejected", 1);
        // The sender sees this reason.
        ret->tag = HOTLINE_PLUGIN_TYPES_DESTINATION_REJECT;
        fmt(&ret->val.reject, "cannot deliver to \"%.*s\": {{name}} routes E.164 numbers only", S(m->to));
        return;
    }
    counter_add("routed", 1);
    // deliver(list<string>): a heap array of one heap string, a copy of m->to.
    router_string_t *to = malloc(sizeof *to);
    if (!to) abort();
    router_string_dup_n(to, (const char *)m->to.ptr, m->to.len);
    ret->tag = HOTLINE_PLUGIN_TYPES_DESTINATION_DELIVER;
    ret->val.deliver = (router_list_string_t){to, 1};
}

void exports_hotline_plugin_routing_route(exports_hotline_plugin_routing_message_meta_t *message,
                                          exports_hotline_plugin_routing_destination_t *ret) {
    route_one(message, ret);
    exports_hotline_plugin_routing_message_meta_free(message);
}

// The broker batches messages a client sends back to back: one answer each, in order.
void exports_hotline_plugin_routing_route_batch(exports_hotline_plugin_routing_list_message_meta_t *messages,
                                                exports_hotline_plugin_routing_list_destination_t *ret) {
    size_t n = messages->len;
    ret->len = n;
    ret->ptr = n ? malloc(n * sizeof *ret->ptr) : NULL;
    if (n && !ret->ptr) abort();
    for (size_t i = 0; i < n; i++) route_one(&messages->ptr[i], &ret->ptr[i]);
    exports_hotline_plugin_routing_list_message_meta_free(messages);
}
