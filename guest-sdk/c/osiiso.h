/*
 * osiiso.h — write osiiso-host plugins in C.
 *
 * A plugin is a WebAssembly component implementing the `plugin` world of wit/task.wit
 * (package osiiso:task@0.1.0). This SDK sits on the `wit-bindgen c` bindings of that world
 * and implements its `tasks` export (list + invoke dispatch): a plugin author writes task
 * functions and one registration table, nothing else.
 *
 *     #include "osiiso.h"
 *
 *     static osiiso_result hello(const char *input) {
 *         char *name = osiiso_json_string(input, NULL);
 *         if (!name) return osiiso_invalid_input("expected a JSON string");
 *         osiiso_buf out = OSIISO_BUF_INIT;
 *         osiiso_buf_puts(&out, "{\"greeting\":");
 *         osiiso_buf_json_string(&out, name);        // quoted and escaped
 *         osiiso_buf_puts(&out, "}");
 *         free(name);
 *         return osiiso_ok_buf(&out);
 *     }
 *
 *     OSIISO_TASKS(
 *         OSIISO_TASK("hello", "Greets NAME.", hello),
 *     );
 *
 * Build with `osiiso-c build -o hello.wasm hello.c` (see guest-sdk/c/README.md).
 *
 * OWNERSHIP (who frees what)
 *
 *   - The `input` a handler receives is borrowed: a NUL-terminated UTF-8 JSON text owned by
 *     the SDK, valid until the handler returns. Do not free or keep it.
 *   - An `osiiso_result` owns its `text` (malloc'd, NUL-terminated). Returning it from a
 *     handler hands it to the SDK, which gives it to the host and frees it after the call.
 *     Every constructor below (osiiso_ok, osiiso_failed, ...) allocates or takes ownership,
 *     so `return osiiso_permanent("...")` never leaks.
 *   - osiiso_ok() copies its argument; osiiso_ok_take() takes a malloc'd buffer (do not
 *     free it afterwards); osiiso_ok_buf() takes the contents of an osiiso_buf and leaves the
 *     buffer empty.
 *   - Strings returned by osiiso_json_string() and osiiso_buf_take() belong to the caller,
 *     who frees them with free().
 *   - The registration table and every string in it (name, description, input_schema) are
 *     borrowed for the life of the program: use string literals or static storage.
 *   - The helpers (osiiso_log, ...) copy what they need; their arguments stay yours.
 *
 * Every attempt runs in a fresh instance, so global state never carries over between tasks
 * or retries. Out of memory aborts (a `trap` on the host), as does a handler that returns an
 * osiiso_result with an invalid status.
 */
#ifndef OSIISO_H
#define OSIISO_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define OSIISO_PRINTF(fmt, args) __attribute__((__format__(__printf__, fmt, args)))
#else
#define OSIISO_PRINTF(fmt, args)
#endif

/* ---------------------------------------------------------------------------------------
 * Results
 * ------------------------------------------------------------------------------------- */

/* How a task attempt ended; the error kinds are the `task-error` cases of the WIT. */
typedef enum osiiso_status {
    OSIISO_OK = 0,        /* `text` is the JSON result */
    OSIISO_FAILED,        /* worth retrying: counts against the caller's `retries` */
    OSIISO_PERMANENT,     /* no retry can fix it; never retried */
    OSIISO_INVALID_INPUT, /* the input did not decode or validate; never retried */
} osiiso_status;

/* What a handler returns. `text` is malloc'd and owned by the result (see OWNERSHIP):
 * the JSON value for OSIISO_OK (NULL means `null`), the message otherwise. */
typedef struct osiiso_result {
    osiiso_status status;
    char *text;
} osiiso_result;

/* A success whose JSON value is a copy of `json` (NULL → `null`). The host parses it; a
 * text that is not JSON ends the attempt with a `serialization` error. */
osiiso_result osiiso_ok(const char *json);
/* A success that takes ownership of the malloc'd, NUL-terminated `json`. */
osiiso_result osiiso_ok_take(char *json);
/* A success whose JSON value is formatted printf-style, e.g. osiiso_okf("%d", n). */
osiiso_result osiiso_okf(const char *format, ...) OSIISO_PRINTF(1, 2);
/* Errors with a printf-style message. */
osiiso_result osiiso_failed(const char *format, ...) OSIISO_PRINTF(1, 2);
osiiso_result osiiso_permanent(const char *format, ...) OSIISO_PRINTF(1, 2);
osiiso_result osiiso_invalid_input(const char *format, ...) OSIISO_PRINTF(1, 2);
/* Any status with a printf-style text. */
osiiso_result osiiso_result_fmt(osiiso_status status, const char *format, ...)
    OSIISO_PRINTF(2, 3);
osiiso_result osiiso_result_vfmt(osiiso_status status, const char *format, va_list args);

/* ---------------------------------------------------------------------------------------
 * Declaring tasks
 * ------------------------------------------------------------------------------------- */

/* A task function: `input` is the task's JSON input, NUL-terminated, borrowed. */
typedef osiiso_result (*osiiso_handler)(const char *input);

/* An optional number in the task table: OSIISO_SOME(3), or leave it out (zero = none). */
typedef struct osiiso_option {
    bool is_some;
    uint64_t value;
} osiiso_option;
#define OSIISO_SOME(v) {true, (uint64_t)(v)}

/* One task. Only `name` and `handler` are required. */
typedef struct osiiso_task {
    const char *name;         /* what `osiiso-host run PLUGIN NAME` calls */
    const char *description;  /* one paragraph, shown by `osiiso-host list` (NULL → "") */
    osiiso_handler handler;
    const char *input_schema; /* JSON Schema of the input, or NULL */
    osiiso_option retries;    /* suggested retries (the caller's options win) */
    osiiso_option timeout_ms; /* suggested per-attempt timeout in milliseconds */
} osiiso_task;

/* An entry of OSIISO_TASKS. OSIISO_TASK_WITH adds designated initializers for the optional
 * fields: OSIISO_TASK_WITH("fetch", "...", fetch, .retries = OSIISO_SOME(2),
 *                          .timeout_ms = OSIISO_SOME(5000)) */
#define OSIISO_TASK(name_, description_, handler_) \
    {.name = (name_), .description = (description_), .handler = (handler_)}
#define OSIISO_TASK_WITH(name_, description_, handler_, ...) \
    {.name = (name_), .description = (description_), .handler = (handler_), __VA_ARGS__}

/* The plugin's task table: write it once, in one source file, at file scope. The SDK's
 * `list` reports the tasks in this order; `invoke` dispatches by name. */
#define OSIISO_TASKS(...)                                     \
    const osiiso_task osiiso_tasks[] = {__VA_ARGS__};         \
    const size_t osiiso_task_count = sizeof(osiiso_tasks) / sizeof(osiiso_tasks[0])

extern const osiiso_task osiiso_tasks[];
extern const size_t osiiso_task_count;

/* ---------------------------------------------------------------------------------------
 * Host services (the `host` import)
 * ------------------------------------------------------------------------------------- */

typedef enum osiiso_level {
    OSIISO_TRACE = 0,
    OSIISO_DEBUG,
    OSIISO_INFO,
    OSIISO_WARN,
    OSIISO_ERROR,
} osiiso_level;

/* A log line attributed to the running task (printf-style). The CLI shows info, warn and
 * error lines by default, debug with -v, trace with -vv (RUST_LOG=osiiso::guest=trace). */
void osiiso_log(osiiso_level level, const char *format, ...) OSIISO_PRINTF(2, 3);
/* Progress of the current attempt. */
void osiiso_progress(uint64_t done, uint64_t total);
/* True once the host wants this attempt to stop; long loops may poll it (the host
 * interrupts the guest anyway after one poll interval). */
bool osiiso_cancelled(void);
/* 1 on the first attempt, 2 on the first retry, ... */
uint32_t osiiso_attempt(void);

/* ---------------------------------------------------------------------------------------
 * JSON helpers (C has no JSON; these cover strings in and JSON text out)
 * ------------------------------------------------------------------------------------- */

/* If `json` is exactly one JSON string (whitespace around it allowed), returns its decoded
 * UTF-8 contents, malloc'd and NUL-terminated (the caller frees it). Otherwise returns NULL
 * and, when `error` is not NULL, points it at a static description. A string containing
 * \u0000 is rejected (it could not be a C string). */
char *osiiso_json_string(const char *json, const char **error);

/* A growable text buffer for building JSON output. Start with OSIISO_BUF_INIT. */
typedef struct osiiso_buf {
    char *data; /* NUL-terminated once anything was appended; may be NULL before */
    size_t len;
    size_t cap;
} osiiso_buf;
#define OSIISO_BUF_INIT {NULL, 0, 0}

void osiiso_buf_puts(osiiso_buf *buf, const char *text);
void osiiso_buf_append(osiiso_buf *buf, const char *bytes, size_t len);
void osiiso_buf_printf(osiiso_buf *buf, const char *format, ...) OSIISO_PRINTF(2, 3);
/* Appends `text` (UTF-8) as a quoted, escaped JSON string literal. */
void osiiso_buf_json_string(osiiso_buf *buf, const char *text);
/* Returns the contents (malloc'd, never NULL; the caller frees it) and empties the buffer. */
char *osiiso_buf_take(osiiso_buf *buf);
/* Frees the contents and empties the buffer. */
void osiiso_buf_free(osiiso_buf *buf);
/* A success whose JSON value is the buffer's contents; the buffer is left empty. */
osiiso_result osiiso_ok_buf(osiiso_buf *buf);

#ifdef __cplusplus
}
#endif

#endif /* OSIISO_H */
