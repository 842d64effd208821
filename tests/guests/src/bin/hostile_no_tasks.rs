//! A plugin that exports the task interface but lists no task at all.

// Linking the SDK gives the `osiiso:task/tasks` export with an empty task list.
use osiiso_guest as _;

fn main() {}
