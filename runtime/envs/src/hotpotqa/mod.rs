//! HotPotQA, fully offline: the distractor setting's paragraphs as a docstore.
//!
//! Each question carries 10 paragraphs (2 gold, 8 distractors); each becomes a page (title ->
//! sentences). The agent's actions follow Reflexion's HotPotQA agents, which used LangChain's
//! `DocstoreExplorer` over Wikipedia:
//!
//! * `Search[entity]`: on an exact title match (case-insensitive as a fallback) the page's first
//!   paragraph; otherwise `Could not find [entity]. Similar: [...]` with the closest titles,
//!   formatted as a Python list, as LangChain printed it.
//! * `Lookup[keyword]`: the next sentence of the last page found that contains the keyword
//!   (case-insensitive), as `(Result i/N) sentence`, then `No More Results`; `No Results` when
//!   none matches; a fixed message when no page has been found yet.
//! * `Finish[answer]`: ends the episode, `Answer is CORRECT` or `Answer is INCORRECT` by exact
//!   match after SQuAD normalisation.
//!
//! Actions are parsed as Reflexion does, with the regex `^(\w+)\[(.+)\]$`.

pub mod agent;
pub mod context;
pub mod cot;
pub mod env;
pub mod react;
pub mod reflect;

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use super::{EnvError, StepResult};
use crate::data::Source;

/// The observation for an action that does not parse or is unknown (Reflexion's wording).
pub const INVALID_ACTION: &str =
    "Invalid Action. Valid Actions are Lookup[<topic>] Search[<topic>] and Finish[<answer>].";
/// The observation for `Lookup` before a page was found (Reflexion's wording).
pub const LOOKUP_WITHOUT_PAGE: &str = "The last page Searched was not found, so you cannot Lookup a keyword in it. Please try one of the similar pages given.";
/// The observation for a correct `Finish`.
pub const ANSWER_CORRECT: &str = "Answer is CORRECT";
/// The observation for a wrong `Finish`.
pub const ANSWER_INCORRECT: &str = "Answer is INCORRECT";
/// The trigram overlap (Jaccard) above which a title that shares no word with a query still
/// counts as similar (a misspelling, another form of a word).
const MIN_TRIGRAM_SIMILARITY: f64 = 0.2;
/// How many similar titles a failed search lists.
pub const SIMILAR_TITLES: usize = 5;

/// A page: a paragraph's title and its sentences.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The Wikipedia title.
    pub title: String,
    /// The sentences, as in the data (leading spaces kept, so that concatenation reads well).
    pub sentences: Vec<String>,
}

impl Page {
    /// The paragraph: the sentences concatenated, trimmed.
    pub fn text(&self) -> String {
        self.sentences.concat().trim().to_string()
    }
}

/// One HotPotQA question with its paragraphs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// The HotPotQA id.
    pub id: String,
    /// The question.
    pub question: String,
    /// The gold answer.
    pub answer: String,
    /// `bridge` or `comparison`.
    pub kind: String,
    /// `easy`, `medium` or `hard`.
    pub level: String,
    /// (title, sentence index) of the supporting facts.
    pub supporting_facts: Vec<(String, usize)>,
    /// The 10 paragraphs.
    pub pages: Vec<Page>,
}

impl Question {
    /// The gold supporting sentences, for the CoT agent with context.
    pub fn supporting_context(&self) -> Vec<String> {
        self.supporting_facts
            .iter()
            .filter_map(|(title, i)| {
                let page = self.pages.iter().find(|p| &p.title == title)?;
                Some(page.sentences.get(*i)?.trim().to_string())
            })
            .collect()
    }
}

#[derive(Deserialize)]
struct RawRow {
    id: String,
    question: String,
    answer: String,
    #[serde(rename = "type")]
    kind: String,
    level: String,
    supporting_facts: RawFacts,
    context: RawContext,
}

#[derive(Deserialize)]
struct RawFacts {
    title: Vec<String>,
    sent_id: Vec<usize>,
}

#[derive(Deserialize)]
struct RawContext {
    title: Vec<String>,
    sentences: Vec<Vec<String>>,
}

/// Reads the HotPotQA distractor JSONL format; a malformed row is reported with its line.
pub fn load(source: impl Into<Source>) -> Result<Vec<Question>, EnvError> {
    load_first(source, None)
}

/// [`load`], reading at most `cap` rows when there is a cap.
pub fn load_first(
    source: impl Into<Source>,
    cap: Option<usize>,
) -> Result<Vec<Question>, EnvError> {
    let source = source.into();
    let path = source.path();
    let rows = super::parse_jsonl_first(&path, source.reader()?, cap, |_, line| {
        let raw: RawRow = serde_json::from_str(line).map_err(|e| e.to_string())?;
        if raw.context.title.len() != raw.context.sentences.len() {
            return Err(format!(
                "context has {} titles but {} sentence lists",
                raw.context.title.len(),
                raw.context.sentences.len()
            ));
        }
        if raw.supporting_facts.title.len() != raw.supporting_facts.sent_id.len() {
            return Err("supporting_facts title and sent_id differ in length".into());
        }
        Ok(Question {
            id: raw.id,
            question: raw.question,
            answer: raw.answer,
            kind: raw.kind,
            level: raw.level,
            supporting_facts: raw
                .supporting_facts
                .title
                .into_iter()
                .zip(raw.supporting_facts.sent_id)
                .collect(),
            pages: raw
                .context
                .title
                .into_iter()
                .zip(raw.context.sentences)
                .map(|(title, sentences)| Page { title, sentences })
                .collect(),
        })
    })?;
    super::require_rows(&path, rows)
}

/// The questions: from `given` (`--data`), else the bundled sample (see [`crate::data`]).
pub fn source(given: Option<&Path>) -> Source {
    Source::resolve(given, &crate::data::HOTPOTQA)
}

/// Pages searchable by title.
#[derive(Debug, Clone, Default)]
pub struct Docstore {
    pages: Vec<Page>,
    by_title: HashMap<String, usize>,
    by_lower_title: HashMap<String, usize>,
    /// Each title's words and character trigrams, for [`Docstore::similar`].
    title_keys: Vec<(Vec<String>, Vec<String>)>,
}

impl Docstore {
    /// A docstore of the given pages (a later page with an already-seen title is ignored).
    pub fn new(pages: impl IntoIterator<Item = Page>) -> Self {
        let mut store = Self::default();
        for p in pages {
            if store.by_title.contains_key(&p.title) {
                continue;
            }
            let i = store.pages.len();
            store.by_title.insert(p.title.clone(), i);
            store
                .by_lower_title
                .entry(p.title.to_lowercase())
                .or_insert(i);
            store.title_keys.push((words(&p.title), trigrams(&p.title)));
            store.pages.push(p);
        }
        store
    }

    /// One question's 10 paragraphs.
    pub fn for_question(q: &Question) -> Self {
        Self::new(q.pages.iter().cloned())
    }

    /// Every page of every question (about 1000 for the 100-question sample).
    pub fn global(questions: &[Question]) -> Self {
        Self::new(questions.iter().flat_map(|q| q.pages.iter().cloned()))
    }

    /// Number of pages.
    pub fn len(&self) -> usize {
        self.pages.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }

    /// The page titled `title`: exactly, else ignoring case, else the one page whose title is
    /// `title` with or without a parenthetical (`Rob Thomas` finds `Rob Thomas (musician)`, as
    /// Wikipedia's search lands on the one article of that name; with two such pages, none).
    pub fn find(&self, title: &str) -> Option<&Page> {
        let lower = title.to_lowercase();
        if let Some(i) = self
            .by_title
            .get(title)
            .or_else(|| self.by_lower_title.get(&lower))
        {
            return self.pages.get(*i);
        }
        let base = |t: &str| -> String {
            let t = t.trim();
            match (t.rfind(" ("), t.ends_with(')')) {
                (Some(at), true) => t[..at].trim().to_lowercase(),
                _ => t.to_lowercase(),
            }
        };
        let wanted = base(title);
        let mut hits = self.pages.iter().filter(|p| base(&p.title) == wanted);
        match (hits.next(), hits.next()) {
            (Some(p), None) => Some(p),
            _ => None,
        }
    }

    /// The titles most similar to `query`, best first (at most `n`, only those sharing
    /// something with it): word overlap first, then character-trigram overlap.
    pub fn similar(&self, query: &str, n: usize) -> Vec<&str> {
        let q_words = words(query);
        let q_grams = trigrams(query);
        let mut scored: Vec<(f64, usize)> = self
            .title_keys
            .iter()
            .enumerate()
            .map(|(i, (w, g))| (jaccard(&q_words, w), jaccard(&q_grams, g), i))
            // A shared word, or enough shared spelling (a trigram or two in common is chance).
            .filter(|(w, g, _)| *w > 0.0 || *g >= MIN_TRIGRAM_SIMILARITY)
            .map(|(w, g, i)| (w + 0.5 * g, i))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        scored
            .into_iter()
            .take(n)
            .map(|(_, i)| self.pages[i].title.as_str())
            .collect()
    }
}

/// Words that say nothing about which page is meant: a title that shares only these with a
/// query is not similar to it.
const STOPWORDS: [&str; 24] = [
    "a", "an", "and", "as", "at", "by", "de", "for", "from", "in", "is", "la", "le", "of", "on",
    "or", "the", "to", "was", "were", "what", "which", "who", "with",
];

/// `s`'s words, lower-cased, without stopwords, in order.
fn words_in_order(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .filter(|w| !STOPWORDS.contains(&w.as_str()))
        .collect()
}

fn words(s: &str) -> Vec<String> {
    let mut v = words_in_order(s);
    v.sort();
    v.dedup();
    v
}

/// Character trigrams of `s`'s words other than stopwords (each word padded by a space).
fn trigrams(s: &str) -> Vec<String> {
    let text: String = words_in_order(s).iter().map(|w| format!(" {w} ")).collect();
    let chars: Vec<char> = text.chars().collect();
    let mut v: Vec<String> = chars.windows(3).map(|w| w.iter().collect()).collect();
    v.sort();
    v.dedup();
    v
}

fn jaccard(a: &[String], b: &[String]) -> f64 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let inter = a.iter().filter(|x| b.binary_search(x).is_ok()).count();
    inter as f64 / (a.len() + b.len() - inter) as f64
}

/// Formats titles as Python's `repr` of a list of strings, as LangChain's observation did.
fn python_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| {
            if s.contains('\'') && !s.contains('"') {
                format!("\"{s}\"")
            } else {
                format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
            }
        })
        .collect();
    format!("[{}]", quoted.join(", "))
}

/// LangChain's `DocstoreExplorer`: remembers the last page found and the lookup position.
#[derive(Debug, Clone)]
pub struct Explorer<'a> {
    store: &'a Docstore,
    page: Option<&'a Page>,
    lookup_term: String,
    lookup_index: usize,
}

impl<'a> Explorer<'a> {
    /// An explorer over `store`, with no page found yet.
    pub fn new(store: &'a Docstore) -> Self {
        Self {
            store,
            page: None,
            lookup_term: String::new(),
            lookup_index: 0,
        }
    }

    /// `Search[query]`.
    pub fn search(&mut self, query: &str) -> String {
        match self.store.find(query) {
            Some(p) => {
                self.page = Some(p);
                self.lookup_term.clear();
                self.lookup_index = 0;
                p.text()
            }
            None => {
                self.page = None;
                format!(
                    "Could not find [{query}]. Similar: {}",
                    python_list(&self.store.similar(query, SIMILAR_TITLES))
                )
            }
        }
    }

    /// `Lookup[term]`: `None` when no page has been found.
    pub fn lookup(&mut self, term: &str) -> Option<String> {
        let page = self.page?;
        let term = term.to_lowercase();
        if term != self.lookup_term {
            self.lookup_term = term;
            self.lookup_index = 0;
        } else {
            self.lookup_index += 1;
        }
        let hits: Vec<&str> = page
            .sentences
            .iter()
            .map(|s| s.trim())
            .filter(|s| s.to_lowercase().contains(&self.lookup_term))
            .collect();
        Some(if hits.is_empty() {
            "No Results".to_string()
        } else if self.lookup_index >= hits.len() {
            "No More Results".to_string()
        } else {
            format!(
                "(Result {}/{}) {}",
                self.lookup_index + 1,
                hits.len(),
                hits[self.lookup_index]
            )
        })
    }
}

/// Parses an action as Reflexion's `^(\w+)\[(.+)\]$` does: a word, `[`, at least one character
/// (no line breaks), `]` at the end (one trailing newline allowed, as Python's `$` allows).
/// A line that does not end in `]` is read up to its first `]`: sampled small actors write words
/// after the action on the same line (`Finish[VIVA Media AG] END OF EXAMPLES`), which the regex
/// rejects as an invalid action although the answer is plain; lines it accepts read as before.
pub fn parse_action(text: &str) -> Option<(&str, &str)> {
    let text = text.strip_suffix('\n').unwrap_or(text);
    let open = text.find('[')?;
    let (name, rest) = text.split_at(open);
    if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return None;
    }
    let rest = rest.strip_prefix('[')?;
    let arg = match rest.strip_suffix(']') {
        Some(arg) => arg,
        None => &rest[..rest.find(']')?],
    };
    if arg.is_empty() || arg.contains('\n') {
        return None;
    }
    Some((name, arg))
}

/// SQuAD answer normalisation: lower case, drop ASCII punctuation, drop the articles
/// a/an/the as whole words, collapse white space.
pub fn normalize_answer(s: &str) -> String {
    let lower = s.to_lowercase();
    let no_punct: String = lower
        .chars()
        .filter(|c| !c.is_ascii_punctuation())
        .collect();
    // `\b(a|an|the)\b`: a maximal run of word characters equal to an article.
    let mut out = String::with_capacity(no_punct.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if matches!(run.as_str(), "a" | "an" | "the") {
            out.push(' ');
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in no_punct.chars() {
        if c.is_alphanumeric() || c == '_' {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Exact match after [`normalize_answer`].
pub fn exact_match(prediction: &str, gold: &str) -> bool {
    normalize_answer(prediction) == normalize_answer(gold)
}

/// One HotPotQA episode: a question, its docstore, and the answer once given.
#[derive(Debug)]
pub struct Episode<'a> {
    question: &'a Question,
    explorer: Explorer<'a>,
    answer: Option<String>,
}

impl<'a> Episode<'a> {
    /// An episode on `question`, searching `store` (its own pages or the global docstore).
    pub fn new(question: &'a Question, store: &'a Docstore) -> Self {
        Self {
            question,
            explorer: Explorer::new(store),
            answer: None,
        }
    }

    /// The question being answered.
    pub fn question(&self) -> &Question {
        self.question
    }

    /// The answer given with `Finish`, if any.
    pub fn answer(&self) -> Option<&str> {
        self.answer.as_deref()
    }

    /// Whether the given answer is correct.
    pub fn success(&self) -> bool {
        self.answer
            .as_deref()
            .is_some_and(|a| exact_match(a, &self.question.answer))
    }

    /// Applies one action line; the observation has its line breaks removed, as Reflexion's
    /// `format_step` does.
    pub fn step(&mut self, action: &str) -> StepResult {
        let (obs, done) = match parse_action(action.trim()) {
            Some(("Search", q)) => (self.explorer.search(q), false),
            Some(("Lookup", k)) => (
                self.explorer
                    .lookup(k)
                    .unwrap_or_else(|| LOOKUP_WITHOUT_PAGE.to_string()),
                false,
            ),
            Some(("Finish", a)) => {
                self.answer = Some(a.to_string());
                let ok = self.success();
                (
                    (if ok { ANSWER_CORRECT } else { ANSWER_INCORRECT }).to_string(),
                    true,
                )
            }
            _ => (INVALID_ACTION.to_string(), false),
        };
        StepResult {
            observation: obs.trim().replace('\n', ""),
            done,
            reward: if done && self.success() { 1.0 } else { 0.0 },
        }
    }
}

/// A small question for tests (who voices Milhouse), shared by the environment's and the
/// agents' tests.
#[cfg(test)]
pub(crate) fn milhouse() -> Question {
    Question {
        id: "q1".into(),
        question: "Who voices Milhouse?".into(),
        answer: "Pamela Hayden".into(),
        kind: "bridge".into(),
        level: "easy".into(),
        supporting_facts: vec![("Milhouse Van Houten".into(), 1)],
        pages: vec![
            Page {
                title: "Milhouse Van Houten".into(),
                sentences: vec![
                    "Milhouse is a character.".into(),
                    " He is voiced by Pamela Hayden.".into(),
                ],
            },
            Page {
                title: "Richard Nixon".into(),
                sentences: vec!["Richard Milhous Nixon was a president.".into()],
            },
        ],
    }
}

#[cfg(test)]
mod tests;
