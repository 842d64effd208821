"""py-text: an osiiso-host plugin written in Python, built with componentize-py.

    stats      "some text"              -> {"words": 2, "lines": 1, "chars": 9}
    top-words  {"text": "...", "n": 3}  -> [{"word": "a", "count": 2}, ...]
    flaky      3                        -> fails (retryable) until attempt 3
    divide     [1, 0]                   -> an uncaught ZeroDivisionError: failed

Build: componentize-py -d ../../wit -w plugin componentize app -o py-text.wasm
"""

# Import every module a task needs here, at the top: componentize-py snapshots the interpreter
# after importing this module, and only what was imported by then is in the component (a
# module imported lazily at run time, like the `heapq` that Counter.most_common uses, is not).
import heapq  # noqa: F401 (used by Counter.most_common)
import re
from collections import Counter

from osiiso_task import Failed, InvalidInput, Permanent, Tasks, attempt, log, progress, task

__all__ = ["Tasks"]

# ASCII whitespace separates words: the same rule as the C example plugin (wordcount-c).
_WORD = re.compile(r"[^ \t\n\r\v\f]+")


@task(input_schema={"type": "string"})
def stats(text):
    """Counts the words, lines and characters of a string."""
    if not isinstance(text, str):
        raise InvalidInput(f"stats: expected a JSON string, got {type(text).__name__}")
    lines = text.count("\n") + (1 if text and not text.endswith("\n") else 0)
    progress(len(text), len(text))
    return {"words": len(_WORD.findall(text)), "lines": lines, "chars": len(text)}


@task(
    name="top-words",
    input_schema={
        "type": "object",
        "properties": {"text": {"type": "string"}, "n": {"type": "integer", "minimum": 1}},
        "required": ["text"],
    },
)
def top_words(value):
    """The N most frequent words (lower-cased) of a text; a text without words is a
    permanent error."""
    if not isinstance(value, dict) or not isinstance(value.get("text"), str):
        raise InvalidInput('top-words: expected {"text": string, "n": integer}')
    n = value.get("n", 3)
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise InvalidInput(f"top-words: n must be a positive integer, got {n!r}")
    words = re.findall(r"\w+", value["text"].lower())
    if not words:
        raise Permanent("top-words: the text has no words")
    log("debug", f"ranking {len(words)} words")
    return [{"word": w, "count": c} for (w, c) in Counter(words).most_common(n)]


@task(retries=2, timeout_ms=5000, input_schema={"type": "integer", "minimum": 1})
def flaky(succeed_on):
    """Fails (retryably) until attempt N, then reports the attempt."""
    if not isinstance(succeed_on, int) or isinstance(succeed_on, bool) or succeed_on < 1:
        raise InvalidInput(f"flaky: expected a positive integer, got {succeed_on!r}")
    current = attempt()
    if current < succeed_on:
        log("warn", f"attempt {current} fails on purpose")
        raise Failed(f"flaky: attempt {current} of {succeed_on} fails on purpose")
    return {"attempt": current}


@task()
def divide(pair):
    """Divides [a, b]; any uncaught exception (here ZeroDivisionError) is a retryable
    failure."""
    a, b = pair
    return a / b
