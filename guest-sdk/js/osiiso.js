// osiiso-host SDK for plugins written in JavaScript and built with componentize-js.
//
// Register tasks with `task(name, fn, options)` and export `tasks` from the plugin module:
//
//     import { task, tasks, InvalidInput } from "./osiiso.js";
//     export { tasks };
//
//     task("shout", (text) => {
//         if (typeof text !== "string") throw new InvalidInput("expected a string");
//         return text.toUpperCase();
//     }, { description: "Upper-cases a string.", inputSchema: { type: "string" } });
//
// A task receives the decoded JSON input and returns any JSON-serialisable value (or a promise
// of one is NOT supported: tasks are synchronous). Errors map to the WIT `task-error` cases:
//
//     throw new Failed("...")        -> failed         (retried up to the caller's `retries`)
//     throw new Permanent("...")     -> permanent      (never retried)
//     throw new InvalidInput("...")  -> invalid-input  (never retried)
//     any other exception            -> failed, message "Name: message"
//
// `log`, `progress`, `cancelled` and `attempt` wrap the `osiiso:task/host` import.

import * as host from "osiiso:task/host@0.1.0";

/** Base of the errors a task throws on purpose. */
export class TaskError extends Error {
    constructor(message) {
        super(message);
        this.name = this.constructor.name;
    }
}

/** Worth retrying: counts against the caller's `retries`. */
export class Failed extends TaskError {}

/** No retry can fix it; never retried. */
export class Permanent extends TaskError {}

/** The input did not decode or validate; never retried. */
export class InvalidInput extends TaskError {}

const registry = new Map();

/**
 * Registers `fn` as the task `name`.
 *
 * options: `description` (string), `inputSchema` (a JSON Schema object), `retries` and
 * `timeoutMs` (suggestions; the caller's options override them).
 */
export function task(name, fn, options = {}) {
    if (typeof name !== "string" || name === "") {
        throw new TypeError("task: the name must be a non-empty string");
    }
    if (typeof fn !== "function") {
        throw new TypeError(`task ${name}: expected a function`);
    }
    if (registry.has(name)) {
        throw new Error(`task ${name} registered twice`);
    }
    const { description = "", inputSchema, retries, timeoutMs } = options;
    registry.set(name, {
        fn,
        info: {
            name,
            description: String(description),
            inputSchema: inputSchema === undefined ? undefined : JSON.stringify(inputSchema),
            retries: retries === undefined ? undefined : retries >>> 0,
            timeoutMs: timeoutMs === undefined ? undefined : BigInt(timeoutMs),
        },
    });
    return fn;
}

/** A `task-error` value for the host: componentize-js turns a thrown `{ payload }` into `err`. */
function taskError(tag, message) {
    const error = new Error(message);
    error.payload = { tag, val: String(message) };
    return error;
}

/** The `tasks` export of the `plugin` world (`wit/task.wit`). */
export const tasks = {
    list() {
        return [...registry.values()].map((entry) => entry.info);
    },

    invoke(name, input) {
        const entry = registry.get(name);
        if (entry === undefined) {
            throw taskError("permanent", `unknown task '${name}'`);
        }
        let value;
        try {
            value = JSON.parse(input);
        } catch (error) {
            throw taskError("invalid-input", `input is not JSON: ${error.message}`);
        }
        let result;
        try {
            result = entry.fn(value);
        } catch (error) {
            if (error instanceof InvalidInput) throw taskError("invalid-input", error.message);
            if (error instanceof Permanent) throw taskError("permanent", error.message);
            if (error instanceof Failed) throw taskError("failed", error.message);
            const kind = error && error.name ? error.name : "Error";
            const message = error && error.message !== undefined ? error.message : String(error);
            if (error && error.stack) log("error", `${kind}: ${message}\n${error.stack}`);
            throw taskError("failed", `${kind}: ${message}`);
        }
        const text = JSON.stringify(result === undefined ? null : result);
        if (text === undefined) {
            throw taskError("failed", `task '${name}' returned a value that is not JSON`);
        }
        return text;
    },
};

/** A log line: level is "trace", "debug", "info", "warn" or "error". */
export function log(level, message) {
    host.log(level, String(message));
}

/** Progress of the current attempt. */
export function progress(done, total) {
    host.progress(BigInt(done), BigInt(total));
}

/** True once the host wants the attempt to stop. */
export function cancelled() {
    return host.cancelled();
}

/** 1 for the first attempt, 2 for the first retry, ... */
export function attempt() {
    return host.attempt();
}
