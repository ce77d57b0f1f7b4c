//! The benchmark data the environments read: bundled with the crate (gzipped, compiled in, so
//! an installed binary has it wherever it runs), or a file the user names.
//!
//! A data set is read from, in order: the file given (`--data PATH`), the file
//! `$RETROFORMER_DATA/<folder>/<file>` when that variable is set and the file exists, else the
//! bundled copy. Files may be gzipped (told by their first two bytes). Origins and licences are
//! in `runtime/envs/data/README.md`.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::EnvError;

/// A data file compiled into the crate.
#[derive(Debug)]
pub struct Bundled {
    /// Its folder (`hotpotqa`, `gsm8k`, ...).
    pub folder: &'static str,
    /// Its file name, without `.gz`.
    pub file: &'static str,
    /// What it is.
    pub about: &'static str,
    gz: &'static [u8],
}

macro_rules! bundled {
    ($name:ident, $folder:literal, $file:literal, $about:literal) => {
        #[doc = $about]
        pub static $name: Bundled = Bundled {
            folder: $folder,
            file: $file,
            about: $about,
            gz: include_bytes!(concat!("../data/", $folder, "/", $file, ".gz")),
        };
    };
}

bundled!(
    HOTPOTQA,
    "hotpotqa",
    "hotpot-qa-distractor-sample.jsonl",
    "HotPotQA: the 100-question distractor sample of the Reflexion paper (CC BY-SA 4.0)."
);
bundled!(
    GSM8K_TRAIN,
    "gsm8k",
    "train.jsonl",
    "GSM8K training split, 7473 problems (MIT)."
);
bundled!(
    GSM8K_TEST,
    "gsm8k",
    "test.jsonl",
    "GSM8K test split, 1319 problems (MIT)."
);
bundled!(
    GSM8K_DEMO,
    "gsm8k",
    "demo.jsonl",
    "Five GSM8K training problems for quick demonstrations (MIT)."
);
bundled!(
    HUMANEVAL,
    "humaneval",
    "HumanEval.jsonl",
    "OpenAI HumanEval, 164 problems (MIT)."
);
bundled!(
    ALFWORLD_PROMPTS,
    "alfworld",
    "alfworld_3prompts.json",
    "ALFWorld ReAct few-shot trajectories of ReAct and Reflexion (MIT)."
);
bundled!(
    REFLEXION_ALFWORLD_EXAMPLES,
    "alfworld",
    "reflexion_few_shot_examples.txt",
    "Reflexion's two failed ALFWorld trajectories with their new plans (MIT)."
);

/// Every bundled file.
pub static ALL: [&Bundled; 7] = [
    &HOTPOTQA,
    &GSM8K_TRAIN,
    &GSM8K_TEST,
    &GSM8K_DEMO,
    &HUMANEVAL,
    &ALFWORLD_PROMPTS,
    &REFLEXION_ALFWORLD_EXAMPLES,
];

impl Bundled {
    /// `folder/file`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.folder, self.file)
    }

    /// The uncompressed bytes.
    pub fn bytes(&self) -> Result<Vec<u8>, EnvError> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(self.gz)
            .read_to_end(&mut out)
            .map_err(|source| EnvError::Io {
                path: PathBuf::from("<bundled>").join(self.folder).join(self.file),
                source,
            })?;
        Ok(out)
    }
}

/// Where a data set is read from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A file (plain or gzipped).
    File(PathBuf),
    /// The bundled copy.
    Bundled(&'static Bundled),
}

impl Source {
    /// The file `given` when there is one, else `$RETROFORMER_DATA/<folder>/<file>` when it
    /// exists, else the bundled copy.
    pub fn resolve(given: Option<&Path>, bundled: &'static Bundled) -> Self {
        if let Some(p) = given {
            return Source::File(p.to_path_buf());
        }
        if let Some(d) = std::env::var_os("RETROFORMER_DATA") {
            let p = PathBuf::from(d).join(bundled.folder).join(bundled.file);
            if p.is_file() {
                return Source::File(p);
            }
        }
        Source::Bundled(bundled)
    }

    /// The file's path, or `<bundled>/folder/file` for the bundled copy (for messages and
    /// records).
    pub fn path(&self) -> PathBuf {
        match self {
            Source::File(p) => p.clone(),
            Source::Bundled(b) => PathBuf::from("<bundled>").join(b.folder).join(b.file),
        }
    }

    /// The file name without `.gz` and without its extension (`test` for `test.jsonl.gz`).
    pub fn stem(&self) -> String {
        let path = self.path();
        let name = path.file_name().and_then(|s| s.to_str()).unwrap_or("row");
        let name = name.strip_suffix(".gz").unwrap_or(name);
        Path::new(name)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("row")
            .to_string()
    }

    /// A reader of the uncompressed text.
    pub fn reader(&self) -> Result<Box<dyn BufRead>, EnvError> {
        match self {
            Source::Bundled(b) => Ok(Box::new(BufReader::new(flate2::read::GzDecoder::new(b.gz)))),
            Source::File(p) => {
                let io = |source| EnvError::Io {
                    path: p.clone(),
                    source,
                };
                // One descriptor: what was checked to be a regular file is what is read.
                let mut file = retroformer_core::fsutil::open_regular(p).map_err(io)?;
                let mut magic = [0u8; 2];
                let n = file.read(&mut magic).map_err(io)?;
                std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0)).map_err(io)?;
                Ok(if n == 2 && magic == [0x1f, 0x8b] {
                    Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(file)))
                } else {
                    Box::new(BufReader::new(file))
                })
            }
        }
    }

    /// The whole uncompressed text.
    pub fn read_to_string(&self) -> Result<String, EnvError> {
        let mut s = String::new();
        self.reader()?
            .read_to_string(&mut s)
            .map_err(|source| EnvError::Io {
                path: self.path(),
                source,
            })?;
        Ok(s)
    }
}

impl From<&Path> for Source {
    fn from(p: &Path) -> Self {
        Source::File(p.to_path_buf())
    }
}

impl From<&PathBuf> for Source {
    fn from(p: &PathBuf) -> Self {
        Source::File(p.clone())
    }
}

impl From<PathBuf> for Source {
    fn from(p: PathBuf) -> Self {
        Source::File(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bundled_file_decompresses_and_has_the_rows_its_readme_lists() {
        let lines = |b: &Bundled| {
            String::from_utf8(b.bytes().unwrap())
                .unwrap()
                .lines()
                .filter(|l| !l.trim().is_empty())
                .count()
        };
        assert_eq!(lines(&HOTPOTQA), 100);
        assert_eq!(lines(&GSM8K_TRAIN), 7473);
        assert_eq!(lines(&GSM8K_TEST), 1319);
        assert_eq!(lines(&GSM8K_DEMO), 5);
        assert_eq!(lines(&HUMANEVAL), 164);
        let prompts: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&ALFWORLD_PROMPTS.bytes().unwrap()).unwrap();
        assert_eq!(prompts.len(), 36);
        let examples = String::from_utf8(REFLEXION_ALFWORLD_EXAMPLES.bytes().unwrap()).unwrap();
        assert_eq!(examples.matches("STATUS: FAIL").count(), 2);
    }

    #[test]
    fn a_given_file_wins_and_may_be_gzipped() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("test.jsonl");
        std::fs::write(&plain, "a\nb\n").unwrap();
        let gz = dir.path().join("test.jsonl.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut enc, b"a\nb\n").unwrap();
        std::fs::write(&gz, enc.finish().unwrap()).unwrap();
        for p in [&plain, &gz] {
            let s = Source::resolve(Some(p), &GSM8K_TEST);
            assert_eq!(s.read_to_string().unwrap(), "a\nb\n");
            assert_eq!(s.stem(), "test");
        }
        let bundled = Source::Bundled(&GSM8K_TEST);
        assert_eq!(bundled.stem(), "test");
        assert_eq!(bundled.path(), Path::new("<bundled>/gsm8k/test.jsonl"));
        let missing = Source::File(dir.path().join("nope.jsonl"));
        let e = missing.reader().err().unwrap().to_string();
        assert!(e.contains("nope.jsonl"), "{e}");
    }
}
