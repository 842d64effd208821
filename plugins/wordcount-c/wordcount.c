/*
 * wordcount-c: an osiiso-host plugin written in C with the SDK in guest-sdk/c.
 *
 *   count    "some text"  -> {"words": 2, "lines": 1, "chars": 9}
 *   longest  "some text"  -> {"word": "some", "chars": 4}; no words is a permanent error
 *   flaky    3            -> fails (retryable) until attempt 3, then {"attempt": 3}
 *
 * A non-string input to count/longest is an invalid-input error.
 * Build: osiiso-c build -o wordcount-c.wasm wordcount.c   (see README.md)
 */
#include <stdlib.h>
#include <string.h>

#include "osiiso.h"

/* ASCII whitespace separates words (the same rule as the Python example plugin). */
static int is_space(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* A UTF-8 continuation byte does not start a character. */
static int starts_char(unsigned char c) {
    return (c & 0xC0) != 0x80;
}

static osiiso_result count(const char *input) {
    const char *error = NULL;
    char *text = osiiso_json_string(input, &error);
    if (!text) {
        return osiiso_invalid_input("count: %s", error);
    }
    size_t len = strlen(text);
    unsigned long long words = 0, lines = 0, chars = 0;
    int in_word = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        chars += starts_char(c);
        if (c == '\n') {
            lines++;
        }
        if (is_space(c)) {
            in_word = 0;
        } else if (!in_word) {
            in_word = 1;
            words++;
        }
        if ((i & 0xFFFF) == 0xFFFF) {
            osiiso_progress(i, len);
        }
    }
    /* A last line without a newline still counts. */
    if (len > 0 && text[len - 1] != '\n') {
        lines++;
    }
    free(text);
    osiiso_progress(len, len);
    osiiso_log(OSIISO_DEBUG, "counted %llu words in %zu bytes", words, len);
    return osiiso_okf("{\"words\":%llu,\"lines\":%llu,\"chars\":%llu}", words, lines, chars);
}

static osiiso_result longest(const char *input) {
    const char *error = NULL;
    char *text = osiiso_json_string(input, &error);
    if (!text) {
        return osiiso_invalid_input("longest: %s", error);
    }
    const char *best = NULL;
    size_t best_bytes = 0, best_chars = 0;
    const char *p = text;
    while (*p) {
        while (*p && is_space((unsigned char)*p)) {
            p++;
        }
        const char *start = p;
        size_t chars = 0;
        while (*p && !is_space((unsigned char)*p)) {
            chars += starts_char((unsigned char)*p);
            p++;
        }
        if (chars > best_chars) {
            best = start;
            best_bytes = (size_t)(p - start);
            best_chars = chars;
        }
    }
    if (!best) {
        free(text);
        /* No retry can make words appear: permanent. */
        return osiiso_permanent("longest: the text has no words");
    }
    char *word = malloc(best_bytes + 1);
    if (!word) {
        abort();
    }
    memcpy(word, best, best_bytes);
    word[best_bytes] = '\0';
    free(text);

    osiiso_buf out = OSIISO_BUF_INIT;
    osiiso_buf_puts(&out, "{\"word\":");
    osiiso_buf_json_string(&out, word);
    osiiso_buf_printf(&out, ",\"chars\":%zu}", best_chars);
    free(word);
    return osiiso_ok_buf(&out);
}

static osiiso_result flaky(const char *input) {
    /* A positive decimal integer (strtoul would accept "-1" and wrap it around). */
    const char *p = input;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') {
        p++;
    }
    unsigned long succeed_on = 0;
    int digits = 0;
    for (; *p >= '0' && *p <= '9' && digits < 9; p++, digits++) {
        succeed_on = succeed_on * 10 + (unsigned long)(*p - '0');
    }
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') {
        p++;
    }
    if (digits == 0 || *p != '\0' || succeed_on == 0) {
        return osiiso_invalid_input("flaky: expected a positive integer, got %s", input);
    }
    uint32_t attempt = osiiso_attempt();
    if (attempt < succeed_on) {
        osiiso_log(OSIISO_WARN, "attempt %u fails on purpose", (unsigned)attempt);
        return osiiso_failed("flaky: attempt %u of %lu fails on purpose", (unsigned)attempt,
                             succeed_on);
    }
    return osiiso_okf("{\"attempt\":%u}", (unsigned)attempt);
}

OSIISO_TASKS(
    OSIISO_TASK_WITH("count", "Counts the words, lines and characters of a string.", count,
                     .input_schema = "{\"type\":\"string\"}"),
    OSIISO_TASK_WITH("longest", "The longest word of a string; a text without words is a "
                     "permanent error.", longest,
                     .input_schema = "{\"type\":\"string\"}"),
    OSIISO_TASK_WITH("flaky", "Fails (retryably) until attempt N, then reports the attempt.",
                     flaky, .retries = OSIISO_SOME(2), .timeout_ms = OSIISO_SOME(5000),
                     .input_schema = "{\"type\":\"integer\",\"minimum\":1}"),
);
