/* wc-program in C: a plain WASI preview-1 program (clang + wasi-libc, no osiiso SDK) that
 * osiiso-host runs as the task `run`, like the Rust one in ../wc-program. It counts the lines,
 * words and bytes of stdin, then:
 *   --env NAME     prints the variable
 *   --stderr TEXT  writes TEXT to stderr
 *   --exit N       exits with status N
 *   --spin         loops forever (for timeouts)
 *
 * Build (Debian: clang lld wasi-libc libclang-rt-dev-wasm32):
 *   clang --target=wasm32-wasi --sysroot=/usr -O2 -o wc-program-c.wasm wc.c
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    size_t lines = 0, words = 0, bytes = 0;
    int in_word = 0, c;
    while ((c = getchar()) != EOF) {
        bytes++;
        if (c == '\n') lines++;
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f') {
            in_word = 0;
        } else if (!in_word) {
            in_word = 1;
            words++;
        }
    }
    /* "args: a b" (and "args: " without any), like the Rust program. */
    printf("args:");
    for (int i = 1; i < argc; i++) printf(" %s", argv[i]);
    printf("%s\n%zu %zu %zu\n", argc == 1 ? " " : "", lines, words, bytes);

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        int has_value = i + 1 < argc;
        if (strcmp(arg, "--env") == 0 && has_value) {
            const char *name = argv[++i];
            const char *value = getenv(name);
            if (value) printf("%s=%s\n", name, value);
            else printf("%s is not set\n", name);
        } else if (strcmp(arg, "--stderr") == 0 && has_value) {
            fprintf(stderr, "%s\n", argv[++i]);
        } else if (strcmp(arg, "--exit") == 0 && has_value) {
            fflush(stdout);
            exit(atoi(argv[++i]));
        } else if (strcmp(arg, "--spin") == 0) {
            fflush(stdout);
            volatile unsigned long long x = 0;
            for (;;) x++;
        }
    }
    return 0;
}
