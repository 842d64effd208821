//! What a node lets submitters grant: directories under its `--allow-dir`s, HTTP hosts it
//! allows, the environment only with `--allow-env`. Anyone who can publish attempts runs
//! code on the node; this is where the node says how far.

use std::path::{Path, PathBuf};

use crate::engine::{DirGrant, GuestStdio, HttpGrant, Sandbox};

/// A node's grant policy.
#[derive(Debug, Clone, Default)]
pub(crate) struct GrantPolicy {
    /// Canonical directories under which grants are allowed.
    dirs: Vec<PathBuf>,
    http: Vec<HttpGrant>,
    env: bool,
    /// The node's compile cache: never granted, whatever the policy says.
    cache: Option<PathBuf>,
}

impl GrantPolicy {
    /// The policy of `--allow-dir`, `--allow-http` and `--allow-env`; every directory must
    /// exist, and none may hold the compile cache.
    pub(crate) fn new(
        dirs: &[PathBuf],
        http: &[String],
        env: bool,
        cache: Option<&Path>,
    ) -> Result<Self, String> {
        let cache = cache.and_then(|c| c.canonicalize().ok());
        let dirs = dirs
            .iter()
            .map(|dir| {
                let canonical = dir
                    .canonicalize()
                    .map_err(|e| format!("--allow-dir '{}': {e}", dir.display()))?;
                if let Some(cache) = &cache
                    && cache.starts_with(&canonical)
                {
                    return Err(format!(
                        "--allow-dir '{}' holds the compile cache ({}); a guest must never \
                         reach it, since compiled code there runs natively",
                        dir.display(),
                        cache.display()
                    ));
                }
                Ok(canonical)
            })
            .collect::<Result<_, _>>()?;
        let http = http
            .iter()
            .map(|spec| HttpGrant::parse(spec).map_err(|e| format!("--allow-http: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            dirs,
            http,
            env,
            cache,
        })
    }

    /// The sandbox a node runs `sandbox` with: every grant checked against the policy (the
    /// error names the first one outside it), directories by the canonical path that was
    /// checked (so the path opened is the path judged), guest output captured.
    pub(crate) fn apply(&self, sandbox: &Sandbox) -> Result<Sandbox, String> {
        self.check(sandbox)?;
        let mut applied = Sandbox::new()
            .inherit_env(sandbox.inherits_env())
            .stdio(GuestStdio::Capture);
        for (key, value) in sandbox.env_vars() {
            applied = applied.env(key, value);
        }
        for spec in sandbox.http_allowed() {
            applied = applied.allow_http(spec.clone());
        }
        for grant in sandbox.dirs() {
            let host = grant
                .host
                .canonicalize()
                .map_err(|e| format!("directory '{}': {e}", grant.host.display()))?;
            applied = applied.grant(DirGrant {
                host,
                ..grant.clone()
            });
        }
        Ok(applied)
    }

    /// Checks what `sandbox` grants; the error names the first grant outside the policy.
    pub(crate) fn check(&self, sandbox: &Sandbox) -> Result<(), String> {
        if sandbox.inherits_env() && !self.env {
            return Err(
                "grant refused by this node: --inherit-env needs a node started with --allow-env"
                    .to_string(),
            );
        }
        for grant in sandbox.dirs() {
            let shown = grant.host.display();
            let Ok(canonical) = grant.host.canonicalize() else {
                return Err(format!(
                    "grant refused by this node: directory '{shown}' does not exist here"
                ));
            };
            let inside = self
                .dirs
                .iter()
                .any(|allowed| canonical.starts_with(allowed));
            let near_cache = self
                .cache
                .as_ref()
                .is_some_and(|cache| cache.starts_with(&canonical) || canonical.starts_with(cache));
            if !inside || near_cache {
                return Err(format!(
                    "grant refused by this node: directory '{shown}' is outside every --allow-dir"
                ));
            }
        }
        for spec in sandbox.http_allowed() {
            let grant = HttpGrant::parse(spec)?;
            if !self.http.iter().any(|allowed| allowed.covers(&grant)) {
                return Err(format!(
                    "grant refused by this node: HTTP to '{spec}' is not in its --allow-http"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_inside_the_policy_pass_and_others_are_named() {
        let root = tempfile::tempdir().unwrap();
        let allowed = root.path().join("data");
        let other = root.path().join("other");
        std::fs::create_dir_all(allowed.join("sub")).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        let policy = GrantPolicy::new(
            std::slice::from_ref(&allowed),
            &["api.example.com".into(), "127.0.0.1:8080".into()],
            false,
            None,
        )
        .unwrap();

        let inside = Sandbox::new()
            .dir(allowed.join("sub"), "/d")
            .allow_http("API.example.com:443")
            .allow_http("127.0.0.1:8080");
        assert_eq!(policy.check(&inside), Ok(()));

        let outside = Sandbox::new().dir(&other, "/d");
        assert!(
            policy
                .check(&outside)
                .unwrap_err()
                .contains("outside every --allow-dir")
        );
        // A path that climbs out through `..` is judged where it lands.
        let climbing = Sandbox::new().dir(allowed.join("sub/../../other"), "/d");
        assert!(policy.check(&climbing).is_err());

        let any_port = Sandbox::new().allow_http("127.0.0.1");
        assert!(policy.check(&any_port).unwrap_err().contains("'127.0.0.1'"));
        let env = Sandbox::new().inherit_env(true);
        assert!(policy.check(&env).unwrap_err().contains("--allow-env"));
    }

    #[test]
    fn the_cache_cannot_be_allowed() {
        let root = tempfile::tempdir().unwrap();
        let cache = root.path().join("cache");
        std::fs::create_dir_all(&cache).unwrap();
        let refused = GrantPolicy::new(&[root.path().to_path_buf()], &[], false, Some(&cache));
        assert!(refused.unwrap_err().contains("compile cache"));
    }
}
