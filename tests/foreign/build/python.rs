//! Python: components made by componentize-py from a directory of modules.

use std::env;
use std::fs;
use std::path::Path;
use std::process::Command;

use crate::stamp;

/// How to run componentize-py: `$COMPONENTIZE_PY`, `componentize-py` on `PATH`, or its
/// console-script entry point through `$PYTHON`/`python3`.
pub struct Componentize {
    make: Box<dyn Fn() -> Command>,
    version: String,
}

impl Componentize {
    pub fn find() -> Result<Self, String> {
        let python = env::var_os("PYTHON").unwrap_or_else(|| "python3".into());
        let make: Box<dyn Fn() -> Command> = match env::var_os("COMPONENTIZE_PY") {
            Some(path) => Box::new(move || Command::new(&path)),
            None if Command::new("componentize-py")
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success()) =>
            {
                Box::new(|| Command::new("componentize-py"))
            }
            // Installed for this Python but not on PATH (e.g. no shim yet): its entry point.
            None => Box::new(move || {
                let mut command = Command::new(&python);
                command.args([
                    "-c",
                    "import sys, componentize_py; sys.argv[0] = 'componentize-py'; \
                     sys.exit(componentize_py.script())",
                ]);
                command
            }),
        };
        let version = match make().arg("--version").output() {
            Ok(output) if output.status.success() => {
                String::from_utf8_lossy(&output.stdout).trim().to_owned()
            }
            Ok(output) => {
                return Err(format!(
                    "componentize-py --version failed: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                ));
            }
            Err(e) => return Err(format!("cannot run componentize-py: {e}")),
        };
        Ok(Self { make, version })
    }

    /// The component of world `world` of `wit` from the Python modules of `plugin` (`module`
    /// is the entry module), into `output`. componentize-py takes ~30 s: skipped when nothing
    /// it reads has changed.
    pub fn build(
        &self,
        wit: &Path,
        world: &str,
        plugin: &Path,
        module: &str,
        output: &Path,
        work: &Path,
    ) {
        let sources = stamp::files_with(plugin, "py");
        let mut inputs = sources.clone();
        inputs.extend(stamp::files_under(wit));
        let stamp = stamp::of(&format!("{} {world} {module}", self.version), &inputs);
        if stamp::fresh(output, &stamp) {
            return;
        }
        // Build from a copy holding only the sources, so neither bytecode caches nor stray
        // files from the plugin directory end up in the component (or in the source tree).
        let src = work.join("src");
        let _ = fs::remove_dir_all(&src);
        fs::create_dir_all(&src).unwrap();
        for file in &sources {
            fs::copy(file, src.join(file.file_name().unwrap())).unwrap();
        }
        stamp::clear(output);
        let result = (self.make)()
            .arg("--quiet")
            .current_dir(work)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .arg("-d")
            .arg(wit)
            .args(["-w", world, "componentize", module, "-p"])
            .arg(&src)
            .arg("-o")
            .arg(output)
            .output()
            .expect("running componentize-py");
        assert!(
            result.status.success(),
            "componentize-py failed to build {} ({}):\n{}{}",
            plugin.display(),
            result.status,
            String::from_utf8_lossy(&result.stdout),
            String::from_utf8_lossy(&result.stderr)
        );
        stamp::write(output, &stamp);
    }
}
