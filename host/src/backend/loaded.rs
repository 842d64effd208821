//! The plugins a long-lived process keeps loaded (a process worker, a NATS node), by content
//! hash: at most a fixed number, the least recently used dropped first. A dropped plugin's
//! running attempts keep its code until they end; loading it again finds its compiled code
//! in the compile cache (or compiles it again when the cache is off).

use std::collections::HashMap;

/// At most `capacity` plugins (or anything kept per plugin), by content hash.
pub(crate) struct LoadedPlugins<P> {
    /// Each plugin with the use count at its last use.
    entries: HashMap<String, (P, u64)>,
    /// Uses so far: the clock of least-recent use.
    uses: u64,
    capacity: usize,
}

impl<P> LoadedPlugins<P> {
    /// An empty set that holds at most `capacity` (at least one).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            uses: 0,
            capacity: capacity.max(1),
        }
    }

    /// The plugin under `hash`, now the most recently used.
    pub(crate) fn get(&mut self, hash: &str) -> Option<&P> {
        self.uses += 1;
        let uses = self.uses;
        self.entries.get_mut(hash).map(|(plugin, used)| {
            *used = uses;
            &*plugin
        })
    }

    /// Keeps `plugin` under `hash` as the most recently used, dropping the least recently
    /// used one when the set is full.
    pub(crate) fn insert(&mut self, hash: &str, plugin: P) {
        self.uses += 1;
        if self.entries.len() >= self.capacity && !self.entries.contains_key(hash) {
            // A linear scan: the set is small (tens of plugins).
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(hash, _)| hash.clone());
            if let Some(oldest) = oldest {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(hash.to_string(), (plugin, self.uses));
    }

    /// Every plugin kept, by hash, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&String, &P)> {
        self.entries
            .iter()
            .map(|(hash, (plugin, _))| (hash, plugin))
    }

    /// How many plugins are kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plugin_in_use_stays_while_one_off_plugins_come_and_go() {
        let mut loaded = LoadedPlugins::new(4);
        loaded.insert("hot", 0);
        for i in 1..1000 {
            assert_eq!(loaded.get("hot"), Some(&0), "use {i}");
            loaded.insert(&format!("once-{i}"), i);
            assert!(loaded.len() <= 4);
        }
        assert_eq!(loaded.len(), 4);
        // The three kept besides it are the latest one-off plugins.
        let mut kept: Vec<&String> = loaded.iter().map(|(hash, _)| hash).collect();
        kept.sort();
        assert_eq!(kept, ["hot", "once-997", "once-998", "once-999"]);
        // Keeping a plugin again replaces it and drops nothing else.
        loaded.insert("once-997", 7);
        assert_eq!(loaded.len(), 4);
        assert_eq!(loaded.get("once-997"), Some(&7));
        assert_eq!(loaded.get("missing"), None);
    }
}
