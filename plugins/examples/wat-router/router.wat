;; A router for Hotline written directly against the canonical ABI, in WebAssembly text:
;; no language, no bindings generator, no WASI. It targets the `router` world of
;; wit/0.2.0 (see docs/plugins.md, "Any language: the canonical ABI by hand").
;;
;; What it does:
;; - `route`: a message whose `to` is E.164 (`+` and 7-15 digits, the first not 0) goes
;;   to `to`; any other is rejected with
;;   `cannot deliver to "<to>": this router takes E.164 numbers only`.
;; - `route-batch`: the same for each message, in order.
;; - `init` accepts any config; `handle-command` refuses every command with
;;   `unknown command; this router takes none`.
;; - Counters `routed` and `rejected` (metrics.counter-add).
;;
;; Memory: a bump allocator. `cabi_realloc` hands out memory from `$heap` upwards (the
;; host calls it to pass strings and lists in); the post-return functions, which the host
;; calls once it has read a result, reset `$heap`, so every call starts from an empty heap.
(module
  ;; metrics.counter-add: func(name: string, value: u64). A string is (pointer, length)
  ;; into this module's memory; the caller (this module) owns it.
  (import "hotline:plugin/metrics@0.2.0" "counter-add" (func $counter_add (param i32 i32 i64)))

  (memory (export "memory") 1)

  ;; Static data below 1024; the return area (12 bytes) at 1024; the heap from 2048.
  (data (i32.const 0) "routed")                                 ;; 6 bytes
  (data (i32.const 16) "rejected")                              ;; 8 bytes
  (data (i32.const 32) "cannot deliver to \"")                  ;; 19 bytes
  (data (i32.const 64) "\": this router takes E.164 numbers only") ;; 39 bytes
  (data (i32.const 128) "unknown command; this router takes none") ;; 39 bytes
  (global $ret_area i32 (i32.const 1024))
  (global $heap_base i32 (i32.const 2048))
  (global $heap (mut i32) (i32.const 2048))

  ;; cabi_realloc(old_ptr, old_size, align, new_size) -> ptr
  (func $realloc (export "cabi_realloc") (param $old i32) (param $old_size i32) (param $align i32) (param $size i32) (result i32)
    (local $ptr i32) (local $end i32)
    ;; Align $heap up: (heap + align - 1) & -align.
    (local.set $ptr
      (i32.and (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
               (i32.sub (i32.const 0) (local.get $align))))
    (local.set $end (i32.add (local.get $ptr) (local.get $size)))
    ;; Grow memory when the end passes it (memory.size is in 64 KiB pages).
    (if (i32.gt_u (local.get $end) (i32.shl (memory.size) (i32.const 16)))
      (then
        (if (i32.eq (memory.grow (i32.shr_u (i32.add (i32.sub (local.get $end) (i32.shl (memory.size) (i32.const 16)))
                                                     (i32.const 65535))
                                            (i32.const 16)))
                    (i32.const -1))
          (then unreachable))))
    (global.set $heap (local.get $end))
    ;; A grown allocation keeps its old bytes.
    (if (local.get $old)
      (then (memory.copy (local.get $ptr) (local.get $old)
              (select (local.get $old_size) (local.get $size) (i32.lt_u (local.get $old_size) (local.get $size))))))
    (local.get $ptr))

  ;; Post-return: everything a call allocated (its arguments and its result) is free again.
  (func $reset (param i32)
    (global.set $heap (global.get $heap_base)))
  (export "cabi_post_hotline:plugin/lifecycle@0.2.0#init" (func $reset))
  (export "cabi_post_hotline:plugin/lifecycle@0.2.0#handle-command" (func $reset))
  (export "cabi_post_hotline:plugin/routing@0.2.0#route" (func $reset))
  (export "cabi_post_hotline:plugin/routing@0.2.0#route-batch" (func $reset))

  ;; Whether the `len` bytes at `ptr` are `+` then 7-15 ASCII digits, the first not 0.
  (func $is_e164 (param $ptr i32) (param $len i32) (result i32)
    (local $i i32) (local $c i32)
    (if (i32.or (i32.lt_u (local.get $len) (i32.const 8)) (i32.gt_u (local.get $len) (i32.const 16)))
      (then (return (i32.const 0))))
    (if (i32.ne (i32.load8_u (local.get $ptr)) (i32.const 43)) ;; '+'
      (then (return (i32.const 0))))
    (if (i32.eq (i32.load8_u offset=1 (local.get $ptr)) (i32.const 48)) ;; '0'
      (then (return (i32.const 0))))
    (local.set $i (i32.const 1))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
        (local.set $c (i32.load8_u (i32.add (local.get $ptr) (local.get $i))))
        (if (i32.or (i32.lt_u (local.get $c) (i32.const 48)) (i32.gt_u (local.get $c) (i32.const 57)))
          (then (return (i32.const 0))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 1))

  ;; Writes the destination for a message to `to_ptr`/`to_len` at `out` (12 bytes: a
  ;; discriminant byte, then at offset 4 the payload's pointer and length) and counts it.
  ;; destination = variant { deliver(list<string>), reject(string) }.
  (func $destination (param $out i32) (param $to_ptr i32) (param $to_len i32)
    (local $list i32) (local $reason i32) (local $len i32)
    (if (call $is_e164 (local.get $to_ptr) (local.get $to_len))
      (then
        ;; deliver([to]): a list of one string, i.e. one (pointer, length) pair (8 bytes,
        ;; align 4); the string's bytes are the argument's, still ours until post-return.
        (local.set $list (call $realloc (i32.const 0) (i32.const 0) (i32.const 4) (i32.const 8)))
        (i32.store (local.get $list) (local.get $to_ptr))
        (i32.store offset=4 (local.get $list) (local.get $to_len))
        (i32.store8 (local.get $out) (i32.const 0))
        (i32.store offset=4 (local.get $out) (local.get $list))
        (i32.store offset=8 (local.get $out) (i32.const 1))
        (call $counter_add (i32.const 0) (i32.const 6) (i64.const 1)))
      (else
        ;; reject(reason): prefix, `to`, suffix, copied into one new string.
        (local.set $len (i32.add (i32.const 58) (local.get $to_len)))
        (local.set $reason (call $realloc (i32.const 0) (i32.const 0) (i32.const 1) (local.get $len)))
        (memory.copy (local.get $reason) (i32.const 32) (i32.const 19))
        (memory.copy (i32.add (local.get $reason) (i32.const 19)) (local.get $to_ptr) (local.get $to_len))
        (memory.copy (i32.add (i32.add (local.get $reason) (i32.const 19)) (local.get $to_len)) (i32.const 64) (i32.const 39))
        (i32.store8 (local.get $out) (i32.const 1))
        (i32.store offset=4 (local.get $out) (local.get $reason))
        (i32.store offset=8 (local.get $out) (local.get $len))
        (call $counter_add (i32.const 16) (i32.const 8) (i64.const 1)))))

  ;; lifecycle.init: func(config: string) -> result<_, string>. The result does not fit
  ;; in one flat value, so it is returned through a pointer: byte 0 is the case (0 = ok).
  (func (export "hotline:plugin/lifecycle@0.2.0#init") (param $config_ptr i32) (param $config_len i32) (result i32)
    (i32.store8 (global.get $ret_area) (i32.const 0))
    (global.get $ret_area))

  ;; lifecycle.handle-command: func(command: command) -> result<string, string>.
  ;; command = record { from: string, name: string, args: list<string> }: six i32s.
  (func (export "hotline:plugin/lifecycle@0.2.0#handle-command")
        (param $from_ptr i32) (param $from_len i32) (param $name_ptr i32) (param $name_len i32)
        (param $args_ptr i32) (param $args_len i32) (result i32)
    (i32.store8 (global.get $ret_area) (i32.const 1)) ;; err
    (i32.store offset=4 (global.get $ret_area) (i32.const 128))
    (i32.store offset=8 (global.get $ret_area) (i32.const 39))
    (global.get $ret_area))

  ;; routing.route: func(message: message-meta) -> destination. message-meta flattens to
  ;; from (ptr, len), to (ptr, len), size (i32), at-ms (i64), kind (case, ptr, len).
  (func (export "hotline:plugin/routing@0.2.0#route")
        (param $from_ptr i32) (param $from_len i32) (param $to_ptr i32) (param $to_len i32)
        (param $size i32) (param $at_ms i64) (param $kind i32) (param $mime_ptr i32) (param $mime_len i32)
        (result i32)
    (call $destination (global.get $ret_area) (local.get $to_ptr) (local.get $to_len))
    (global.get $ret_area))

  ;; routing.route-batch: func(messages: list<message-meta>) -> list<destination>.
  ;; In memory a message-meta is 48 bytes (align 8): from at 0, to at 8 (pointer, length),
  ;; size at 16, at-ms at 24, kind at 32 (case byte, then pointer and length at 36, 40).
  ;; A destination is 12 bytes (align 4). The answer (pointer, length) goes to the return area.
  (func (export "hotline:plugin/routing@0.2.0#route-batch") (param $ptr i32) (param $len i32) (result i32)
    (local $out i32) (local $i i32) (local $msg i32)
    (local.set $out (call $realloc (i32.const 0) (i32.const 0) (i32.const 4) (i32.mul (local.get $len) (i32.const 12))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
        (local.set $msg (i32.add (local.get $ptr) (i32.mul (local.get $i) (i32.const 48))))
        (call $destination
          (i32.add (local.get $out) (i32.mul (local.get $i) (i32.const 12)))
          (i32.load offset=8 (local.get $msg))
          (i32.load offset=12 (local.get $msg)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.store (global.get $ret_area) (local.get $out))
    (i32.store offset=4 (global.get $ret_area) (local.get $len))
    (global.get $ret_area))
)
