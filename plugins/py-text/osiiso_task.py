"""A small osiiso-host SDK for Python plugins built with componentize-py.

Copy this module next to your plugin (it has no dependency but the bindings componentize-py
generates from wit/task.wit at build time) and write tasks:

    from osiiso_task import Tasks, task, Permanent, InvalidInput, log

    @task()
    def shout(text):
        "Upper-cases a string."
        if not isinstance(text, str):
            raise InvalidInput("expected a string")
        return text.upper()

A task receives the decoded JSON input and returns any JSON-serialisable value. Errors map to
the WIT `task-error` cases:

    raise Failed("...")        -> failed         (retried up to the caller's `retries`)
    raise Permanent("...")     -> permanent      (never retried)
    raise InvalidInput("...")  -> invalid-input  (never retried)
    any other exception        -> failed, message "ExceptionType: message" (the traceback is
                                  logged at error level)

The plugin module must make `Tasks` visible (import it): componentize-py looks for a class of
that name implementing the `tasks` export.
"""

import json
import traceback

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import tasks as wit_tasks
from wit_world.imports import host

__all__ = [
    "Tasks",
    "task",
    "Failed",
    "Permanent",
    "InvalidInput",
    "log",
    "progress",
    "cancelled",
    "attempt",
]


class TaskError(Exception):
    """Base of the errors a task raises on purpose."""


class Failed(TaskError):
    """Worth retrying: counts against the caller's `retries`."""


class Permanent(TaskError):
    """No retry can fix it; never retried."""


class InvalidInput(TaskError):
    """The input did not decode or validate; never retried."""


_TASKS = {}


def task(name=None, description=None, input_schema=None, retries=None, timeout_ms=None):
    """Registers a function as a task. The name defaults to the function's name with
    underscores as dashes; the description to its docstring."""

    def register(function):
        task_name = name or function.__name__.replace("_", "-")
        if task_name in _TASKS:
            raise ValueError(f"task {task_name!r} registered twice")
        _TASKS[task_name] = (
            function,
            wit_tasks.TaskInfo(
                name=task_name,
                description=" ".join((description or function.__doc__ or "").split()),
                input_schema=None if input_schema is None else json.dumps(input_schema),
                retries=retries,
                timeout_ms=timeout_ms,
            ),
        )
        return function

    return register


def log(level, message):
    """A log line attributed to the running task; level is "trace", "debug", "info",
    "warn" or "error"."""
    host.log(host.Level[level.upper()], str(message))


def progress(done, total):
    """Progress of the current attempt."""
    host.progress(int(done), int(total))


def cancelled():
    """True once the host wants this attempt to stop."""
    return host.cancelled()


def attempt():
    """1 on the first attempt, 2 on the first retry, ..."""
    return host.attempt()


def _error(kind, message):
    return Err(kind(str(message)))


class Tasks(exports.Tasks):
    """The `tasks` export: lists the registered tasks and dispatches `invoke` by name."""

    def list(self):
        return [info for (_, info) in _TASKS.values()]

    def invoke(self, name, input):
        entry = _TASKS.get(name)
        if entry is None:
            known = ", ".join(_TASKS)
            raise _error(wit_tasks.TaskError_Permanent, f"unknown task '{name}' (known: {known})")
        function = entry[0]
        try:
            value = json.loads(input)
        except ValueError as error:
            raise _error(wit_tasks.TaskError_InvalidInput, f"task '{name}': cannot decode input: {error}")
        try:
            result = function(value)
        except Permanent as error:
            raise _error(wit_tasks.TaskError_Permanent, error)
        except InvalidInput as error:
            raise _error(wit_tasks.TaskError_InvalidInput, error)
        except Failed as error:
            raise _error(wit_tasks.TaskError_Failed, error)
        except Exception as error:  # noqa: BLE001 - every other exception is retryable
            log("error", traceback.format_exc())
            raise _error(wit_tasks.TaskError_Failed, f"{type(error).__name__}: {error}")
        try:
            return json.dumps(result)
        except (TypeError, ValueError) as error:
            raise _error(wit_tasks.TaskError_Permanent, f"task '{name}': cannot encode output: {error}")
