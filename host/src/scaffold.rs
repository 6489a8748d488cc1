//! `hotline plugins new`: writes a plugin project (Rust, C, Python or JavaScript) for one
//! slot from the templates in `host/templates/`, with the WIT contract copied in, so that
//! its `build.sh` builds a loadable component on the first try.
//!
//! Architecture Invariant: this module only writes files. It knows nothing of the broker
//! beyond the slot names (`policy::Slot`), and the templates know nothing of this code
//! beyond the placeholders listed in [`Placeholders`].

use std::fmt;
use std::path::{Path, PathBuf};

use include_dir::{include_dir, Dir};

use crate::policy::Slot;

/// `host/templates/<lang>/common/` holds files every slot gets; `<lang>/<slot>/` the slot's
/// own source. Embedded in the binary so `hotline plugins new` works anywhere.
static TEMPLATES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/templates");

/// The plugin contract the projects build against (the newest, [`CONTRACT_VERSION`]),
/// written as `wit/plugin.wit`. (`plugins::bindings` tests that it is that version's folder.)
pub const WIT: &str = include_str!("../../wit/0.2.0/plugin.wit");

/// The WIT package version of [`WIT`]; components built from it import
/// `hotline:plugin/...@CONTRACT_VERSION`, which is how the broker knows what they were built
/// for. Defined once, in the guest SDK.
pub use hotline_plugin::CONTRACT_VERSION;

/// Languages `hotline plugins new` can write a project in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    C,
    Python,
    Js,
}

impl Lang {
    pub const ALL: [Lang; 4] = [Lang::Rust, Lang::C, Lang::Python, Lang::Js];

    /// The template folder's name, also `{{lang}}` in the templates.
    pub fn name(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::C => "c",
            Lang::Python => "python",
            Lang::Js => "js",
        }
    }
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a project could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The name is not lowercase letters, digits and dashes starting with a letter.
    #[error("invalid project name {0:?}: use lowercase letters, digits and '-', starting with a letter (like my-router)")]
    BadName(String),
    /// The slot is not one of router, registrar, receipts, notifier.
    #[error("unknown slot {0:?}: choose router, registrar, receipts or notifier")]
    BadSlot(String),
    /// The target folder exists and is not empty; nothing is overwritten.
    #[error("{0} already exists and is not empty; choose another name or --dir")]
    NotEmpty(PathBuf),
    /// There is no template for this language and slot (the notifier has a Rust one only).
    #[error("no {lang} template for the {slot} slot in this build of hotline (the notifier slot has a rust template only)")]
    NoTemplate { lang: Lang, slot: Slot },
    /// Writing a file failed.
    #[error("writing {path}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// What a template's `{{...}}` placeholders become.
#[derive(Debug, Clone)]
pub struct Placeholders {
    /// `{{name}}`: the project name, e.g. `my-router`; `{{ident}}`: the same with `-` as
    /// `_` (a Rust crate's library name).
    pub name: String,
    /// `{{slot}}`: router, registrar, receipts or notifier (the WIT world).
    pub slot: Slot,
    /// `{{lang}}`: rust, c, python or js. (`{{api_version}}` is [`CONTRACT_VERSION`].)
    pub lang: Lang,
}

impl Placeholders {
    fn apply(&self, text: &str) -> String {
        text.replace("{{name}}", &self.name)
            .replace("{{ident}}", &self.name.replace('-', "_"))
            .replace("{{slot}}", self.slot.name())
            .replace("{{lang}}", self.lang.name())
            .replace("{{api_version}}", CONTRACT_VERSION)
    }
}

/// Checks a project name: `[a-z][a-z0-9-]*`, at most 64 characters, not ending in `-`.
pub fn check_name(name: &str) -> Result<(), ScaffoldError> {
    let ok = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ScaffoldError::BadName(name.to_string()))
    }
}

/// Writes a new `lang` project for `slot` named `name` into `dir` (which must not exist or
/// be empty). Returns the files written, relative to `dir`, in order.
pub fn create(lang: Lang, name: &str, slot: &str, dir: &Path) -> Result<Vec<PathBuf>, ScaffoldError> {
    check_name(name)?;
    let slot = Slot::from_name(slot).ok_or_else(|| ScaffoldError::BadSlot(slot.to_string()))?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ScaffoldError::Io { path, source }
    };
    if dir.exists() && std::fs::read_dir(dir).map_err(io(dir))?.next().is_some() {
        return Err(ScaffoldError::NotEmpty(dir.to_path_buf()));
    }
    let common = TEMPLATES.get_dir(format!("{lang}/common"));
    let own = TEMPLATES.get_dir(format!("{lang}/{slot}"));
    let (Some(common), Some(own)) = (common, own) else {
        return Err(ScaffoldError::NoTemplate { lang, slot });
    };
    let values = Placeholders { name: name.to_string(), slot, lang };

    let mut files: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    for (root, template) in [(common, "common"), (own, slot.name())] {
        let prefix = Path::new(lang.name()).join(template);
        for file in all_files(root) {
            let relative = file.path().strip_prefix(&prefix).expect("template file under its folder");
            // Dotfiles are stored without the dot so tools that skip them (cargo package,
            // editors) do not lose them: `gitignore` becomes `.gitignore`.
            let relative = match relative.to_str() {
                Some("gitignore") => PathBuf::from(".gitignore"),
                _ => relative.to_path_buf(),
            };
            let contents = match file.contents_utf8() {
                Some(text) => values.apply(text).into_bytes(),
                None => file.contents().to_vec(),
            };
            files.push((relative, contents));
        }
    }
    files.push((PathBuf::from("wit/plugin.wit"), WIT.as_bytes().to_vec()));
    if lang == Lang::C {
        // wasi-libc's stdio imports WASI preview 1; `wasm-tools component new --adapt`
        // turns that into WASI 0.2 with this adapter, from the broker's wasmtime release.
        files.push((
            PathBuf::from("wasi_snapshot_preview1.reactor.wasm"),
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER.to_vec(),
        ));
    }

    for (relative, contents) in &files {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&path, contents).map_err(io(&path))?;
        if relative.extension().is_some_and(|e| e == "sh") {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).map_err(io(&path))?;
        }
    }
    Ok(files.into_iter().map(|(p, _)| p).collect())
}

fn all_files<'a>(dir: &'a Dir<'a>) -> Vec<&'a include_dir::File<'a>> {
    let mut out: Vec<_> = dir.files().collect();
    for sub in dir.dirs() {
        out.extend(all_files(sub));
    }
    out.sort_by_key(|f| f.path());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_and_slot_gets_a_complete_project_with_no_placeholder_left() {
        for lang in Lang::ALL {
            for slot in Slot::ALL {
                if slot == Slot::Notifier && lang != Lang::Rust {
                    let err = create(lang, "my-plugin", slot.name(), &tempfile::tempdir().unwrap().path().join("p")).unwrap_err();
                    assert!(matches!(err, ScaffoldError::NoTemplate { .. }), "{lang} {slot}: {err}");
                    continue;
                }
                let dir = tempfile::tempdir().unwrap();
                let project = dir.path().join("my-plugin");
                let files = create(lang, "my-plugin", slot.name(), &project).unwrap();
                assert!(files.contains(&PathBuf::from("build.sh")), "{lang} {slot}: {files:?}");
                assert!(files.contains(&PathBuf::from("README.md")), "{lang} {slot}");
                assert!(files.contains(&PathBuf::from(".gitignore")), "{lang} {slot}");
                assert_eq!(std::fs::read_to_string(project.join("wit/plugin.wit")).unwrap(), WIT);
                for file in &files {
                    let bytes = std::fs::read(project.join(file)).unwrap();
                    if let Ok(text) = String::from_utf8(bytes) {
                        assert!(!text.contains("{{"), "{lang} {slot}: {} keeps a placeholder", file.display());
                    }
                }
                let text: String = files
                    .iter()
                    .filter_map(|f| std::fs::read_to_string(project.join(f)).ok())
                    .collect();
                assert!(text.contains(&format!("hello from my-plugin ({lang} {slot})")), "{lang} {slot}: no hello answer");
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(project.join("build.sh")).unwrap().permissions().mode();
                assert_eq!(mode & 0o111, 0o111, "{lang} {slot}: build.sh is not executable");
            }
        }
    }

    #[test]
    fn c_projects_carry_the_wasi_adapter() {
        let dir = tempfile::tempdir().unwrap();
        create(Lang::C, "c-plugin", "router", dir.path()).unwrap();
        let adapter = std::fs::read(dir.path().join("wasi_snapshot_preview1.reactor.wasm")).unwrap();
        assert_eq!(&adapter[..4], b"\0asm");
    }

    #[test]
    fn bad_names_slots_and_folders_are_refused_and_nothing_is_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["", "My-Plugin", "1plugin", "my plugin", "my_plugin", "plugin-", "../x"] {
            assert!(matches!(create(Lang::Rust, name, "router", &dir.path().join("x")), Err(ScaffoldError::BadName(_))), "{name:?}");
        }
        assert!(matches!(create(Lang::Rust, "p", "sender", &dir.path().join("p")), Err(ScaffoldError::BadSlot(_))));
        std::fs::write(dir.path().join("keep.txt"), "mine").unwrap();
        let err = create(Lang::Python, "p", "router", dir.path()).unwrap_err();
        assert!(matches!(err, ScaffoldError::NotEmpty(_)), "{err}");
        assert_eq!(std::fs::read_to_string(dir.path().join("keep.txt")).unwrap(), "mine");
        assert!(!dir.path().join("build.sh").exists());
    }
}
