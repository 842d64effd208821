/*
 * osiiso.c — the C SDK's implementation: the `tasks` export over the plugin's task table, the
 * host helpers, results and the small JSON helpers. Compiled together with the generated
 * bindings (`plugin.h`, `plugin.c` from `wit-bindgen c`, world `plugin` of wit/task.wit).
 */
#include "osiiso.h"

#include <stdio.h>
#include <string.h>

#include "plugin.h"

/* The bindings reference the symbol of `plugin_component_type.o`, the object `wit-bindgen c`
 * can emit with the world's type information. The osiiso-c tool embeds that information when
 * it makes the component instead, so this weak definition satisfies the reference; linking
 * the object as well is harmless (its strong definition wins, and the two copies of the type
 * information are identical). */
__attribute__((__weak__)) void __component_type_object_force_link_plugin(void) {}

/* ---------------------------------------------------------------------------------------
 * Memory
 * ------------------------------------------------------------------------------------- */

static void *xmalloc(size_t size) {
    void *p = malloc(size ? size : 1);
    if (!p) {
        fputs("osiiso: out of memory\n", stderr);
        abort();
    }
    return p;
}

static void *xrealloc(void *ptr, size_t size) {
    void *p = realloc(ptr, size ? size : 1);
    if (!p) {
        fputs("osiiso: out of memory\n", stderr);
        abort();
    }
    return p;
}

static char *xstrdup(const char *text) {
    size_t len = strlen(text);
    char *copy = xmalloc(len + 1);
    memcpy(copy, text, len + 1);
    return copy;
}

static char *vformat(const char *format, va_list args) {
    va_list copy;
    va_copy(copy, args);
    int len = vsnprintf(NULL, 0, format, copy);
    va_end(copy);
    if (len < 0) {
        return xstrdup(format);
    }
    char *text = xmalloc((size_t)len + 1);
    vsnprintf(text, (size_t)len + 1, format, args);
    return text;
}

/* ---------------------------------------------------------------------------------------
 * Results
 * ------------------------------------------------------------------------------------- */

osiiso_result osiiso_ok(const char *json) {
    return (osiiso_result){OSIISO_OK, json ? xstrdup(json) : NULL};
}

osiiso_result osiiso_ok_take(char *json) {
    return (osiiso_result){OSIISO_OK, json};
}

osiiso_result osiiso_result_vfmt(osiiso_status status, const char *format, va_list args) {
    return (osiiso_result){status, vformat(format, args)};
}

osiiso_result osiiso_result_fmt(osiiso_status status, const char *format, ...) {
    va_list args;
    va_start(args, format);
    osiiso_result result = osiiso_result_vfmt(status, format, args);
    va_end(args);
    return result;
}

#define OSIISO_DEFINE_RESULT(fn, status)                               \
    osiiso_result fn(const char *format, ...) {                        \
        va_list args;                                                  \
        va_start(args, format);                                        \
        osiiso_result result = osiiso_result_vfmt(status, format, args); \
        va_end(args);                                                  \
        return result;                                                 \
    }

OSIISO_DEFINE_RESULT(osiiso_okf, OSIISO_OK)
OSIISO_DEFINE_RESULT(osiiso_failed, OSIISO_FAILED)
OSIISO_DEFINE_RESULT(osiiso_permanent, OSIISO_PERMANENT)
OSIISO_DEFINE_RESULT(osiiso_invalid_input, OSIISO_INVALID_INPUT)

/* ---------------------------------------------------------------------------------------
 * Host services
 * ------------------------------------------------------------------------------------- */

void osiiso_log(osiiso_level level, const char *format, ...) {
    va_list args;
    va_start(args, format);
    char *text = vformat(format, args);
    va_end(args);
    if (level > OSIISO_ERROR) {
        level = OSIISO_ERROR;
    }
    /* Imported functions borrow their arguments: the message stays ours to free. */
    plugin_string_t message = {(uint8_t *)text, strlen(text)};
    osiiso_task_host_log((osiiso_task_host_level_t)level, &message);
    free(text);
}

void osiiso_progress(uint64_t done, uint64_t total) {
    osiiso_task_host_progress(done, total);
}

bool osiiso_cancelled(void) {
    return osiiso_task_host_cancelled();
}

uint32_t osiiso_attempt(void) {
    return osiiso_task_host_attempt();
}

/* ---------------------------------------------------------------------------------------
 * JSON helpers
 * ------------------------------------------------------------------------------------- */

static const char *skip_ws(const char *p) {
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') {
        p++;
    }
    return p;
}

static int hex4(const char *p, uint32_t *out) {
    uint32_t value = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        value <<= 4;
        if (c >= '0' && c <= '9') {
            value |= (uint32_t)(c - '0');
        } else if (c >= 'a' && c <= 'f') {
            value |= (uint32_t)(c - 'a' + 10);
        } else if (c >= 'A' && c <= 'F') {
            value |= (uint32_t)(c - 'A' + 10);
        } else {
            return 0;
        }
    }
    *out = value;
    return 1;
}

static char *put_utf8(char *out, uint32_t cp) {
    if (cp < 0x80) {
        *out++ = (char)cp;
    } else if (cp < 0x800) {
        *out++ = (char)(0xC0 | (cp >> 6));
        *out++ = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *out++ = (char)(0xE0 | (cp >> 12));
        *out++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *out++ = (char)(0x80 | (cp & 0x3F));
    } else {
        *out++ = (char)(0xF0 | (cp >> 18));
        *out++ = (char)(0x80 | ((cp >> 12) & 0x3F));
        *out++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *out++ = (char)(0x80 | (cp & 0x3F));
    }
    return out;
}

#define JSON_FAIL(message)     \
    do {                       \
        if (error) {           \
            *error = (message); \
        }                      \
        free(out);             \
        return NULL;           \
    } while (0)

char *osiiso_json_string(const char *json, const char **error) {
    char *out = NULL;
    if (!json) {
        JSON_FAIL("no input");
    }
    const char *p = skip_ws(json);
    if (*p != '"') {
        JSON_FAIL("expected a JSON string");
    }
    p++;
    /* Decoding never lengthens the text. */
    out = xmalloc(strlen(p) + 1);
    char *w = out;
    for (;;) {
        unsigned char c = (unsigned char)*p;
        if (c == '\0') {
            JSON_FAIL("unterminated JSON string");
        }
        if (c == '"') {
            p++;
            break;
        }
        if (c < 0x20) {
            JSON_FAIL("control character in JSON string");
        }
        if (c != '\\') {
            *w++ = (char)c;
            p++;
            continue;
        }
        p++;
        switch (*p) {
        case '"': *w++ = '"'; p++; break;
        case '\\': *w++ = '\\'; p++; break;
        case '/': *w++ = '/'; p++; break;
        case 'b': *w++ = '\b'; p++; break;
        case 'f': *w++ = '\f'; p++; break;
        case 'n': *w++ = '\n'; p++; break;
        case 'r': *w++ = '\r'; p++; break;
        case 't': *w++ = '\t'; p++; break;
        case 'u': {
            uint32_t cp;
            if (!hex4(p + 1, &cp)) {
                JSON_FAIL("bad \\u escape in JSON string");
            }
            p += 5;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                uint32_t low;
                if (p[0] != '\\' || p[1] != 'u' || !hex4(p + 2, &low) || low < 0xDC00 ||
                    low > 0xDFFF) {
                    JSON_FAIL("unpaired surrogate in JSON string");
                }
                p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                JSON_FAIL("unpaired surrogate in JSON string");
            }
            if (cp == 0) {
                JSON_FAIL("\\u0000 in JSON string");
            }
            w = put_utf8(w, cp);
            break;
        }
        default:
            JSON_FAIL("bad escape in JSON string");
        }
    }
    if (*skip_ws(p) != '\0') {
        JSON_FAIL("trailing characters after the JSON string");
    }
    *w = '\0';
    return out;
}

void osiiso_buf_append(osiiso_buf *buf, const char *bytes, size_t len) {
    if (buf->len + len + 1 > buf->cap) {
        size_t cap = buf->cap ? buf->cap : 64;
        while (cap < buf->len + len + 1) {
            cap *= 2;
        }
        buf->data = xrealloc(buf->data, cap);
        buf->cap = cap;
    }
    memcpy(buf->data + buf->len, bytes, len);
    buf->len += len;
    buf->data[buf->len] = '\0';
}

void osiiso_buf_puts(osiiso_buf *buf, const char *text) {
    osiiso_buf_append(buf, text, strlen(text));
}

void osiiso_buf_printf(osiiso_buf *buf, const char *format, ...) {
    va_list args;
    va_start(args, format);
    char *text = vformat(format, args);
    va_end(args);
    osiiso_buf_puts(buf, text);
    free(text);
}

void osiiso_buf_json_string(osiiso_buf *buf, const char *text) {
    static const char hex[] = "0123456789abcdef";
    osiiso_buf_append(buf, "\"", 1);
    const char *run = text;
    for (const char *p = text; *p; p++) {
        unsigned char c = (unsigned char)*p;
        const char *escape = NULL;
        char unicode[7];
        switch (c) {
        case '"': escape = "\\\""; break;
        case '\\': escape = "\\\\"; break;
        case '\n': escape = "\\n"; break;
        case '\r': escape = "\\r"; break;
        case '\t': escape = "\\t"; break;
        case '\b': escape = "\\b"; break;
        case '\f': escape = "\\f"; break;
        default:
            if (c < 0x20) {
                memcpy(unicode, "\\u00", 4);
                unicode[4] = hex[c >> 4];
                unicode[5] = hex[c & 0xF];
                unicode[6] = '\0';
                escape = unicode;
            }
        }
        if (escape) {
            osiiso_buf_append(buf, run, (size_t)(p - run));
            osiiso_buf_puts(buf, escape);
            run = p + 1;
        }
    }
    osiiso_buf_puts(buf, run);
    osiiso_buf_append(buf, "\"", 1);
}

char *osiiso_buf_take(osiiso_buf *buf) {
    char *data = buf->data ? buf->data : xstrdup("");
    buf->data = NULL;
    buf->len = buf->cap = 0;
    return data;
}

void osiiso_buf_free(osiiso_buf *buf) {
    free(buf->data);
    buf->data = NULL;
    buf->len = buf->cap = 0;
}

osiiso_result osiiso_ok_buf(osiiso_buf *buf) {
    return osiiso_ok_take(osiiso_buf_take(buf));
}

/* ---------------------------------------------------------------------------------------
 * The `tasks` export
 * ------------------------------------------------------------------------------------- */

/* Moves a malloc'd C string into a component string (the bindings' post-return frees it). */
static void give_string(plugin_string_t *ret, char *text) {
    size_t len = strlen(text);
    if (len == 0) {
        /* The post-return function frees only non-empty strings. */
        free(text);
        ret->ptr = NULL;
    } else {
        ret->ptr = (uint8_t *)text;
    }
    ret->len = len;
}

void exports_osiiso_task_tasks_list(exports_osiiso_task_tasks_list_task_info_t *ret) {
    size_t count = osiiso_task_count;
    ret->len = count;
    ret->ptr = NULL;
    if (count == 0) {
        return;
    }
    /* Freed (with every string in it) by the bindings' post-return function. */
    ret->ptr = xmalloc(count * sizeof(*ret->ptr));
    for (size_t i = 0; i < count; i++) {
        const osiiso_task *task = &osiiso_tasks[i];
        exports_osiiso_task_tasks_task_info_t *info = &ret->ptr[i];
        memset(info, 0, sizeof(*info));
        give_string(&info->name, xstrdup(task->name ? task->name : ""));
        give_string(&info->description, xstrdup(task->description ? task->description : ""));
        if (task->input_schema) {
            info->input_schema.is_some = true;
            give_string(&info->input_schema.val, xstrdup(task->input_schema));
        }
        if (task->retries.is_some) {
            info->retries.is_some = true;
            info->retries.val = (uint32_t)task->retries.value;
        }
        if (task->timeout_ms.is_some) {
            info->timeout_ms.is_some = true;
            info->timeout_ms.val = task->timeout_ms.value;
        }
    }
}

static const osiiso_task *find_task(const plugin_string_t *name) {
    for (size_t i = 0; i < osiiso_task_count; i++) {
        const char *candidate = osiiso_tasks[i].name;
        if (candidate && strlen(candidate) == name->len &&
            memcmp(candidate, name->ptr, name->len) == 0) {
            return &osiiso_tasks[i];
        }
    }
    return NULL;
}

static void set_error(exports_osiiso_task_tasks_task_error_t *err, osiiso_status status,
                      char *message) {
    switch (status) {
    case OSIISO_FAILED:
        err->tag = EXPORTS_OSIISO_TASK_TASKS_TASK_ERROR_FAILED;
        give_string(&err->val.failed, message);
        break;
    case OSIISO_PERMANENT:
        err->tag = EXPORTS_OSIISO_TASK_TASKS_TASK_ERROR_PERMANENT;
        give_string(&err->val.permanent, message);
        break;
    case OSIISO_INVALID_INPUT:
        err->tag = EXPORTS_OSIISO_TASK_TASKS_TASK_ERROR_INVALID_INPUT;
        give_string(&err->val.invalid_input, message);
        break;
    default:
        fprintf(stderr, "osiiso: a task returned an invalid status %d\n", (int)status);
        abort();
    }
}

/* Arguments of an export are owned by the callee: `name` and `input` are freed here. */
bool exports_osiiso_task_tasks_invoke(plugin_string_t *name, plugin_string_t *input,
                                      plugin_string_t *ret,
                                      exports_osiiso_task_tasks_task_error_t *err) {
    const osiiso_task *task = find_task(name);
    if (!task || !task->handler) {
        osiiso_buf message = OSIISO_BUF_INIT;
        osiiso_buf_puts(&message, "unknown task '");
        osiiso_buf_append(&message, (const char *)name->ptr, name->len);
        osiiso_buf_puts(&message, "' (known: ");
        for (size_t i = 0; i < osiiso_task_count; i++) {
            osiiso_buf_printf(&message, "%s%s", i ? ", " : "",
                              osiiso_tasks[i].name ? osiiso_tasks[i].name : "?");
        }
        osiiso_buf_puts(&message, ")");
        plugin_string_free(name);
        plugin_string_free(input);
        set_error(err, OSIISO_PERMANENT, osiiso_buf_take(&message));
        return false;
    }
    plugin_string_free(name);

    /* The input as a NUL-terminated C string: grow the host's buffer by one byte. */
    size_t len = input->len;
    char *text;
    if (len == 0) {
        text = xstrdup("");
    } else {
        text = xrealloc(input->ptr, len + 1);
        text[len] = '\0';
    }
    input->ptr = NULL;
    input->len = 0;
    if (memchr(text, '\0', len) != NULL) {
        free(text);
        set_error(err, OSIISO_INVALID_INPUT, xstrdup("the input contains a NUL byte"));
        return false;
    }

    osiiso_result result = task->handler(text);
    free(text);

    if (result.status == OSIISO_OK) {
        give_string(ret, result.text ? result.text : xstrdup("null"));
        return true;
    }
    set_error(err, result.status, result.text ? result.text : xstrdup(""));
    return false;
}
