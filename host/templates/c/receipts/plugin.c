// {{name}}: a Hotline receipts plugin in C. It decides which receipts ("delivered",
// "read") reach the sender of a message.
//
// This one lets every receipt through. Counter: allowed. Command: hello.
//
// How C maps to the contract (wit/plugin.wit, world {{slot}}): build.sh runs
// `wit-bindgen c --world {{slot}}`, which writes build/gen/{{slot}}.h (read it: every type
// and function is there) and build/gen/{{slot}}.c.
//   - What the broker provides (imports) are functions named hotline_plugin_<interface>_<name>,
//     e.g. hotline_plugin_metrics_counter_add(&name, 1).
//   - What the plugin provides (exports) are functions this file defines, named
//     exports_hotline_plugin_<interface>_<name>. A WIT `result` becomes a bool return
//     (true = ok) with the ok value in *ret and the error in *err.
//   - A WIT string is receipts_string_t {ptr, len}: UTF-8, NOT NUL-terminated.
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

#include "receipts.h"

// ---- small helpers -------------------------------------------------------------------

// Sets *out to a heap string formatted like printf. Aborts (a trap) if out of memory.
static void fmt(receipts_string_t *out, const char *format, ...) {
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

static bool str_eq(const receipts_string_t *s, const char *lit) {
    size_t n = strlen(lit);
    return s->len == n && memcmp(s->ptr, lit, n) == 0;
}

static void counter_add(const char *name, uint64_t n) {
    receipts_string_t s;
    receipts_string_set(&s, name);  // points at the literal: imports do not take ownership
    hotline_plugin_metrics_counter_add(&s, n);
}

static void log_info(const char *message) {
    receipts_string_t s;
    receipts_string_set(&s, message);
    hotline_plugin_log_log(HOTLINE_PLUGIN_LOG_LEVEL_INFO, &s);
}

// ---- lifecycle -----------------------------------------------------------------------

// Called on every new instance (the broker keeps several) before any other call, with the
// slot's config text from the broker's config file. This plugin needs none.
bool exports_hotline_plugin_lifecycle_init(receipts_string_t *config, receipts_string_t *err) {
    (void)err;
    receipts_string_free(config);
    log_info("{{name}} started");
    return true;
}

// A client's command: `hotline-chat command {{slot}} NAME ARGS...`.
bool exports_hotline_plugin_lifecycle_handle_command(exports_hotline_plugin_lifecycle_command_t *command,
                                                     receipts_string_t *ret, receipts_string_t *err) {
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

// ---- receipting ----------------------------------------------------------------------

// Whether this receipt reaches the message's sender (receipt->to). A receipt has a status
// (HOTLINE_PLUGIN_TYPES_RECEIPT_STATUS_DELIVERED or _READ), the message's id, and who
// received or read it (receipt->by).
bool exports_hotline_plugin_receipting_allow(exports_hotline_plugin_receipting_receipt_meta_t *receipt) {
    counter_add("allowed", 1);
    exports_hotline_plugin_receipting_receipt_meta_free(receipt);
    return true;
}
