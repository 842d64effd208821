//! JavaScript: components made by componentize-js, installed from npm at the version that
//! `guest-sdk/js/package-lock.json` pins, once, into `<target>/js-tools/`.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::stamp;

pub struct Componentize {
    /// `<tools>/node_modules/.bin/componentize-js`.
    bin: PathBuf,
    /// The lock file's digest: the tool's version for stamps.
    version: String,
}

impl Componentize {
    /// componentize-js from `tools`, installed there with `npm ci` from the package files in
    /// `sdk` unless the same lock file was installed before.
    pub fn install(sdk: &Path, tools: &Path) -> Result<Self, String> {
        let node = env::var_os("NODE").unwrap_or_else(|| "node".into());
        let npm = env::var_os("NPM").unwrap_or_else(|| "npm".into());
        for (tool, name) in [(&node, "node"), (&npm, "npm")] {
            if !Command::new(tool)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
            {
                return Err(format!("{name} is not installed"));
            }
        }
        let lock = fs::read(sdk.join("package-lock.json")).map_err(|e| e.to_string())?;
        let version = stamp::of("componentize-js", &[sdk.join("package-lock.json")]);
        let bin = tools.join("node_modules/.bin/componentize-js");
        let installed = tools.join("installed.stamp");
        if bin.is_file() && fs::read_to_string(&installed).is_ok_and(|s| s == version) {
            return Ok(Self { bin, version });
        }
        fs::create_dir_all(tools).map_err(|e| e.to_string())?;
        fs::copy(sdk.join("package.json"), tools.join("package.json"))
            .map_err(|e| e.to_string())?;
        fs::write(tools.join("package-lock.json"), lock).map_err(|e| e.to_string())?;
        let _ = fs::remove_file(&installed);
        let result = Command::new(&npm)
            .current_dir(tools)
            .args(["ci", "--no-audit", "--no-fund", "--loglevel", "error"])
            .output()
            .map_err(|e| format!("cannot run npm: {e}"))?;
        if !result.status.success() {
            return Err(format!(
                "npm ci of componentize-js failed:\n{}",
                String::from_utf8_lossy(&result.stderr)
            ));
        }
        fs::write(&installed, &version).map_err(|e| e.to_string())?;
        Ok(Self { bin, version })
    }

    /// The component of world `world` of `wit` from `sources` (the first is the entry
    /// module; the others sit beside it, for relative imports), into `output`. Each build
    /// takes 10-60 s: skipped when nothing it reads has changed.
    pub fn build(&self, wit: &Path, world: &str, sources: &[&PathBuf], output: &Path, work: &Path) {
        let mut inputs: Vec<PathBuf> = sources.iter().map(|p| p.to_path_buf()).collect();
        inputs.extend(stamp::files_under(wit));
        let stamp = stamp::of(&format!("{} {world}", self.version), &inputs);
        if stamp::fresh(output, &stamp) {
            return;
        }
        let src = work.join("src");
        let _ = fs::remove_dir_all(&src);
        fs::create_dir_all(&src).unwrap();
        for file in sources {
            fs::copy(file, src.join(file.file_name().unwrap())).unwrap();
        }
        stamp::clear(output);
        let entry = sources[0].file_name().unwrap();
        let result = Command::new(&self.bin)
            .current_dir(&src)
            .arg(entry)
            .arg("--wit")
            .arg(wit)
            .args(["--world-name", world, "-o"])
            .arg(output)
            .output()
            .expect("running componentize-js");
        assert!(
            result.status.success(),
            "componentize-js failed to build {} ({}):\n{}{}",
            sources[0].display(),
            result.status,
            String::from_utf8_lossy(&result.stdout),
            String::from_utf8_lossy(&result.stderr)
        );
        stamp::write(output, &stamp);
    }
}
