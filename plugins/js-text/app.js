// js-text: an osiiso-host plugin written in JavaScript and built with componentize-js, using
// the SDK in guest-sdk/js (osiiso.js). It counts like py-text and wordcount-c.
//
//     stats      "some text"              -> {"words": 2, "lines": 1, "chars": 9}
//     top-words  {"text": "...", "n": 3}  -> [{"word": "a", "count": 2}, ...]
//     flaky      3                        -> fails (retryable) until attempt 3
//     divide     [1, 0]                   -> an uncaught exception: failed
//
// Build: componentize-js app.js --wit ../../wit --world-name plugin -o js-text.wasm
//        (with osiiso.js copied next to app.js)

import { task, tasks, Failed, InvalidInput, Permanent, attempt, log, progress } from "./osiiso.js";

export { tasks };

// ASCII whitespace separates words: the same rule as the C and Python examples.
const WORD = /[^ \t\n\r\v\f]+/g;

task(
    "stats",
    (text) => {
        if (typeof text !== "string") {
            throw new InvalidInput(`stats: expected a JSON string, got ${kindOf(text)}`);
        }
        const lines = (text.match(/\n/g) || []).length + (text && !text.endsWith("\n") ? 1 : 0);
        // Characters are Unicode code points, as in Python.
        const chars = [...text].length;
        progress(chars, chars);
        return { words: (text.match(WORD) || []).length, lines, chars };
    },
    {
        description: "Counts the words, lines and characters of a string.",
        inputSchema: { type: "string" },
    },
);

task(
    "top-words",
    (value) => {
        if (value === null || typeof value !== "object" || typeof value.text !== "string") {
            throw new InvalidInput('top-words: expected {"text": string, "n": integer}');
        }
        const n = value.n === undefined ? 3 : value.n;
        if (!Number.isInteger(n) || n < 1) {
            throw new InvalidInput(`top-words: n must be a positive integer, got ${JSON.stringify(n)}`);
        }
        const words = wordsOf(value.text.toLowerCase());
        if (words.length === 0) {
            throw new Permanent("top-words: the text has no words");
        }
        log("debug", `ranking ${words.length} words`);
        const counts = new Map();
        for (const word of words) counts.set(word, (counts.get(word) || 0) + 1);
        // Most frequent first; ties keep the order of first appearance (like Python's Counter).
        return [...counts.entries()]
            .sort((a, b) => b[1] - a[1])
            .slice(0, n)
            .map(([word, count]) => ({ word, count }));
    },
    {
        description:
            "The N most frequent words (lower-cased) of a text; a text without words is a permanent error.",
        inputSchema: {
            type: "object",
            properties: { text: { type: "string" }, n: { type: "integer", minimum: 1 } },
            required: ["text"],
        },
    },
);

task(
    "flaky",
    (succeedOn) => {
        if (!Number.isInteger(succeedOn) || succeedOn < 1) {
            throw new InvalidInput(`flaky: expected a positive integer, got ${JSON.stringify(succeedOn)}`);
        }
        const current = attempt();
        if (current < succeedOn) {
            log("warn", `attempt ${current} fails on purpose`);
            throw new Failed(`flaky: attempt ${current} of ${succeedOn} fails on purpose`);
        }
        return { attempt: current };
    },
    {
        description: "Fails (retryably) until attempt N, then reports the attempt.",
        inputSchema: { type: "integer", minimum: 1 },
        retries: 2,
        timeoutMs: 5000,
    },
);

task(
    "divide",
    ([a, b]) => {
        if (b === 0) throw new RangeError("division by zero");
        return a / b;
    },
    { description: "Divides [a, b]; any uncaught exception (here a RangeError) is a retryable failure." },
);

// Runs of letters, digits and underscores (like Python's `\w+`; a letter is a character with
// an upper and a lower case, as this engine has no Unicode property classes).
function wordsOf(text) {
    const words = [];
    let word = "";
    for (const ch of text) {
        if (/[0-9_]/.test(ch) || ch.toLowerCase() !== ch.toUpperCase()) {
            word += ch;
        } else if (word) {
            words.push(word);
            word = "";
        }
    }
    if (word) words.push(word);
    return words;
}

function kindOf(value) {
    if (value === null) return "null";
    if (Array.isArray(value)) return "array";
    return typeof value;
}
