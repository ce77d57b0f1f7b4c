//! Continuous batching: [`Session::generate_stream`](retroformer_llm::Session::generate_stream) on
//! one llama.cpp context.
//!
//! Every sequence has a KV stream of its own (`n_ctx` cells). Sequence 0 holds the prompt
//! prefix that the first requests share (evaluated once, reusing the session's cache). Every
//! other sequence is a lane: a request is admitted to a free lane, takes the longest prefix it
//! can from that lane's own cache (a follow-up of the request that just finished there) or from
//! sequence 0 (llama.cpp copies the whole stream, then the lane drops what it does not share),
//! and its prompt tail and generated tokens then share every `llama_decode` with the other
//! lanes'.
//! A request whose prompt another lane is still evaluating becomes that lane's twin: it takes
//! the other lane's cells and first logits instead of evaluating the prompt again. When a
//! request finishes, the caller's `on_done` may return follow-ups: the first one goes to the
//! lane that just finished, the rest ahead of the queue. At the end the lanes are emptied and
//! sequence 0 keeps the prefix, as after a single request.

use std::collections::VecDeque;
use std::time::Instant;

use llama_cpp_sys_2 as sys;

use super::{check_request, common_prefix, ms, Failure, Resumed, TokenSampler, Worker};
use crate::{decode, tokenize};
use retroformer_llm::{
    FinishReason, GenerateRequest, Generation, GenerationStats, Keyed, LlmError, SampledToken,
    StopStream, Token,
};

/// One admitted request.
struct Job {
    key: u64,
    req: GenerateRequest,
    prompt: Vec<Token>,
    sampler: TokenSampler,
    stream: StopStream,
    /// The lane whose identical prompt this one takes (cells and first logits).
    twin_of: Option<usize>,
    /// Prompt tokens in this lane's cache.
    fed: usize,
    next: Option<Token>,
    logits_at: Option<i32>,
    /// Every token sampled ([`Generation::tokens`]).
    sampled: Vec<SampledToken>,
    generated: u32,
    reused: usize,
    tokenize_ms: f64,
    admitted: Instant,
    first_ms: Option<f64>,
}

/// A sequence of the context and the tokens its cells hold, in position order.
struct Lane {
    seq: i32,
    tokens: Vec<Token>,
    job: Option<Job>,
}

impl Lane {
    fn waiting_twin(&self) -> bool {
        self.job
            .as_ref()
            .is_some_and(|j| j.twin_of.is_some() && j.fed < j.prompt.len())
    }
}

/// What `run` needs from its caller for each finished request: its generation or its own
/// error, answered with the follow-ups (or the caller's panic).
pub type Report<'a> =
    dyn FnMut(u64, Result<Generation, LlmError>) -> Result<Vec<Keyed>, Failure> + 'a;

/// Where `serve` gets more requests (see [`retroformer_llm::Intake`]), or the caller's panic.
pub type Feed<'a> = dyn FnMut(bool) -> Result<Vec<Keyed>, Failure> + 'a;

/// A request that ended on admission: its key and its result (nothing to generate, or refused).
type Ended = (u64, Result<Generation, LlmError>);

/// Requests waiting for a lane, with their prompt's tokens when already tokenised.
type Queue = VecDeque<(Keyed, Option<Vec<Token>>)>;

/// Puts follow-ups at the head of the queue, in their order.
fn requeue(queue: &mut Queue, follow: Vec<Keyed>) {
    for f in follow.into_iter().rev() {
        queue.push_front((f, None));
    }
}

/// A request's own error, to report for it alone; any other error ends the stream.
fn own(e: LlmError) -> Result<LlmError, Failure> {
    if e.is_request_error() {
        Ok(e)
    } else {
        Err(Failure::Llm(e))
    }
}

impl Worker {
    /// Runs `first`, every follow-up `on_done` returns and, when serving, every request `intake`
    /// brings, as lanes and cells allow.
    // long: the continuous-batching loop: admission, cancellation, lane compaction, prompt chunks or decode steps, twins and sampling share the lanes' state and the context; each phase is commented in place.
    pub(super) fn generate_stream(
        &mut self,
        first: Vec<Keyed>,
        mut intake: Option<&mut Feed<'_>>,
        on_done: &mut Report<'_>,
    ) -> Result<(), Failure> {
        if first.is_empty() {
            // Nothing to do: in particular, sequence 0's cached prefix stays.
            return Ok(());
        }
        let lanes = self.cfg.n_seq_max.saturating_sub(1) as usize;
        if lanes < 2 {
            // One sequence: one request at a time on the ordinary path.
            let mut queue: VecDeque<Keyed> = first.into();
            loop {
                let Some((key, req)) = queue.pop_front() else {
                    match intake.as_mut() {
                        Some(f) => match f(true)? {
                            more if more.is_empty() => return Ok(()),
                            more => {
                                queue.extend(more);
                                continue;
                            }
                        },
                        None => return Ok(()),
                    }
                };
                let r =
                    check_request(&req).and_then(|()| self.generate(&req, &mut |s| req.emit(s)));
                let r = match r {
                    Ok(g) => Ok(g),
                    Err(e) => {
                        // A failed call may leave the cache in an unknown state.
                        self.clear_cache();
                        Err(own(e)?)
                    }
                };
                for (i, f) in on_done(key, r)?.into_iter().enumerate() {
                    queue.insert(i, f);
                }
            }
        }
        let _threads = Resumed::new(self.pool);
        let n_ctx = self.cfg.n_ctx as usize;
        // The prefix the first requests share, on sequence 0 (reusing what it holds).
        if self.cached_key != self.key() {
            self.clear_cache();
            self.cached_key = self.key();
        }
        // Requests that cannot run are refused alone, once the lanes are set up.
        let mut admitted = Vec::with_capacity(first.len());
        let mut firsts = Vec::with_capacity(first.len());
        let mut refused = Vec::new();
        for (key, r) in first {
            match self.tokens_of(&r) {
                Ok(t) => {
                    admitted.push((key, r));
                    firsts.push(t);
                }
                Err(e) => refused.push((key, own(e)?)),
            }
        }
        // Serving: no shared prefix on sequence 0; each request starts from its lane's cache
        // or its saved file, which evaluating the prefix here first would pre-empt.
        let shared = match firsts.split_first().filter(|_| intake.is_none()) {
            None => 0,
            Some((a, rest)) => rest.iter().fold(a.len() - 1, |s, b| {
                s.min(common_prefix(a, b)).min(b.len() - 1)
            }),
        };
        let reused0 = {
            let c = common_prefix(
                &self.cached,
                firsts.first().map_or(&[][..], |p| &p[..shared]),
            );
            self.truncate_cache(c)
        };
        if let Some(p) = firsts.first() {
            self.eval(&p[reused0..shared]).map_err(Failure::Llm)?;
        }
        // The prefix's evaluation is charged to the first request that uses it.
        let mut prefix_charge = shared - reused0;
        // SAFETY: ctx is live.
        let mem = unsafe { sys::llama_get_memory(self.ctx.as_ptr()) };
        let mut lanes: Vec<Lane> = (1..=lanes as i32)
            .map(|seq| Lane {
                seq,
                tokens: Vec::new(),
                job: None,
            })
            .collect();
        for l in &lanes {
            // SAFETY: mem belongs to the live context; every lane's id is below n_seq_max.
            unsafe { sys::llama_memory_seq_rm(mem, l.seq, -1, -1) };
        }
        let mut queue: Queue = admitted
            .into_iter()
            .zip(firsts.into_iter().map(Some))
            .collect();
        let mut tally = Tally::default();
        // Whether the last step evaluated prompt chunks (see `prefilling` below).
        let mut last_prefill = false;
        let result = (|| -> Result<(), Failure> {
            for (key, e) in refused {
                requeue(&mut queue, on_done(key, Err(e))?);
            }
            loop {
                // When serving, requests that arrived meanwhile join the queue.
                if let Some(f) = intake.as_mut() {
                    queue.extend(f(false)?.into_iter().map(|r| (r, None)));
                }
                // Admit queued requests into free lanes, oldest first; each goes to the idle
                // lane whose cache shares most with its prompt.
                while lanes.iter().any(|l| l.job.is_none()) {
                    let Some(((key, req), toks)) = queue.pop_front() else {
                        break;
                    };
                    let prompt = match toks.map_or_else(|| self.tokens_of(&req), Ok) {
                        Ok(t) => t,
                        Err(e) => {
                            requeue(&mut queue, on_done(key, Err(own(e)?))?);
                            continue;
                        }
                    };
                    let i = lanes
                        .iter()
                        .enumerate()
                        .filter(|(_, l)| l.job.is_none())
                        .max_by_key(|(k, l)| (common_prefix(&l.tokens, &prompt), usize::MAX - k))
                        .map(|(k, _)| k)
                        .expect("a lane is free");
                    if let Some((k, g)) =
                        self.admit(&mut lanes, i, key, req, prompt, &mut prefix_charge, mem)?
                    {
                        requeue(&mut queue, on_done(k, g)?);
                    }
                }
                // Requests cancelled or past their deadline end alone, with what they have.
                requeue(&mut queue, interrupt(&mut lanes, on_done)?);
                if lanes.iter().all(|l| l.job.is_none()) {
                    if queue.is_empty() {
                        // Serving: wait for more; the lanes keep their caches meanwhile.
                        let more = match intake.as_mut() {
                            Some(f) => f(true)?,
                            None => Vec::new(),
                        };
                        if more.is_empty() {
                            return Ok(());
                        }
                        queue.extend(more.into_iter().map(|r| (r, None)));
                    }
                    continue;
                }
                // llama.cpp puts only consecutive sequence ids into one micro-batch (per-sequence
                // KV streams): when requests have left lanes free below busy ones, the highest
                // busy lanes move down, so that one decode step stays one graph run.
                // Not while a twin waits for its source's cells (it names the source's lane);
                // a twin that has its cells only keeps `twin_of` as a mark.
                // When serving, an idle lane's cache is a conversation's next prefix: it is
                // swapped up rather than overwritten (sequence 0 serves as the spare).
                if !lanes.iter().any(Lane::waiting_twin) {
                    let spare = intake.is_some().then_some(&mut self.cached);
                    tally.moves += compact(&mut lanes, mem, spare);
                }
                // One batch: the prompt chunks of the lanes that have some left, or the next
                // token of every lane that has one. Kept apart because llama.cpp splits a batch
                // over per-sequence KV streams into micro-batches with the same number of tokens
                // per sequence: one prompt chunk among single tokens would cut the decode step
                // into many small graph runs, each reading all the weights. While both wait,
                // they take turns (chunked prefill): a long new prompt does not stall the
                // running sequences for its whole evaluation.
                let wants_prefill = lanes.iter().any(|l| {
                    !l.waiting_twin() && l.job.as_ref().is_some_and(|j| j.fed < j.prompt.len())
                });
                let wants_decode = lanes
                    .iter()
                    .any(|l| l.job.as_ref().is_some_and(|j| j.next.is_some()));
                let prefilling = wants_prefill && !(last_prefill && wants_decode);
                last_prefill = prefilling;
                self.batch.clear();
                for l in lanes.iter_mut() {
                    let waiting = l.waiting_twin();
                    let Some(j) = l.job.as_mut() else { continue };
                    j.logits_at = None;
                    if waiting {
                        continue;
                    }
                    let room = self.batch.cap - self.batch.len();
                    if j.fed < j.prompt.len() {
                        if !prefilling {
                            continue;
                        }
                        let take = (j.prompt.len() - j.fed).min(room);
                        for t in j.fed..j.fed + take {
                            let last = t + 1 == j.prompt.len();
                            let idx = self.batch.push(j.prompt[t], t, l.seq, last);
                            l.tokens.push(j.prompt[t]);
                            if last {
                                j.logits_at = Some(idx);
                            }
                        }
                        j.fed += take;
                    } else if room > 0 && !prefilling {
                        if let Some(tok) = j.next.take() {
                            j.logits_at = Some(self.batch.push(tok, l.tokens.len(), l.seq, true));
                            l.tokens.push(tok);
                        }
                    }
                }
                if self.batch.len() == 0 {
                    // Only twins whose source finished without logits to share: impossible
                    // (a source always samples once), but never spin.
                    return Err(Failure::Llm(LlmError::Context(
                        "batched generation stalled".into(),
                    )));
                }
                let t_decode = Instant::now();
                let rc = {
                    let _r = self.model.lock.read().unwrap_or_else(|e| e.into_inner());
                    // SAFETY: ctx is live; every token is in the vocabulary (sampled, or
                    // checked by tokenize), every sequence id is below n_seq_max, and each
                    // lane's positions continue its own cells.
                    unsafe { decode(self.ctx.as_ptr(), self.batch.raw) }
                };
                let rc = rc.map_err(|e| {
                    Failure::Llm(LlmError::Context(format!("llama_decode threw: {e}")))
                })?;
                if rc != 0 {
                    return Err(Failure::Llm(if rc == 1 {
                        LlmError::PromptTooLong {
                            prompt_tokens: lanes.iter().map(|l| l.tokens.len()).max().unwrap_or(0)
                                as u32,
                            context_size: self.cfg.n_ctx,
                        }
                    } else {
                        LlmError::Decode(rc)
                    }));
                }
                tally.count(
                    prefilling,
                    self.batch.len(),
                    groups(&self.batch),
                    ms(t_decode),
                );
                // Twins whose source prompt has just been evaluated take its cells and logits.
                for k in 0..lanes.len() {
                    let Some(src) = lanes[k].job.as_ref().and_then(|j| j.twin_of) else {
                        continue;
                    };
                    if !lanes[k].waiting_twin() {
                        continue;
                    }
                    let ready = lanes[src].job.as_ref().and_then(|j| {
                        (j.fed == j.prompt.len() && j.generated == 0 && j.first_ms.is_none())
                            .then_some(j.logits_at)
                            .flatten()
                    });
                    if let Some(idx) = ready {
                        // SAFETY: as above; both are this context's lanes. The copy is of the
                        // whole source stream (as llama.cpp requires across streams), which
                        // holds the source's prompt and nothing else yet.
                        unsafe {
                            sys::llama_memory_seq_rm(mem, lanes[k].seq, -1, -1);
                            sys::llama_memory_seq_cp(mem, lanes[src].seq, lanes[k].seq, -1, -1);
                        }
                        let tokens = lanes[src].tokens.clone();
                        let l = &mut lanes[k];
                        l.tokens = tokens;
                        let j = l.job.as_mut().expect("twin has a job");
                        j.fed = j.prompt.len();
                        j.reused = j.prompt.len();
                        j.logits_at = Some(idx);
                    }
                }
                // Sample every lane that has logits; finished requests report back.
                for i in 0..lanes.len() {
                    let Some(idx) = lanes[i].job.as_ref().and_then(|j| j.logits_at) else {
                        continue;
                    };
                    let lane_full = lanes[i].tokens.len() + 1 >= n_ctx;
                    let finish = {
                        let mut j = lanes[i].job.take().expect("lane has a job");
                        j.first_ms.get_or_insert_with(|| ms(j.admitted));
                        let token = match self.sample(&mut j.sampler, &j.req, idx) {
                            Ok(t) => {
                                j.sampled.push(t);
                                j.sampled[j.sampled.len() - 1].id
                            }
                            Err(e) => {
                                let e = own(e)?;
                                requeue(&mut queue, on_done(j.key, Err(e))?);
                                continue;
                            }
                        };
                        // SAFETY: vocab is live; the token was sampled from the vocabulary.
                        let eog = unsafe { sys::llama_vocab_is_eog(self.model.vocab(), token) };
                        let finish = if !j.req.ignore_eos && eog {
                            Some(FinishReason::EndOfGeneration)
                        } else {
                            j.generated += 1;
                            let shown = j.stream.push(&j.sampled[j.sampled.len() - 1].bytes);
                            if !shown.is_empty() && !j.req.emit(shown) {
                                Some(FinishReason::Cancelled)
                            } else if let Some(s) = j.stream.stopped() {
                                Some(FinishReason::Stop(s.to_string()))
                            } else if j.generated >= j.req.max_tokens {
                                Some(FinishReason::MaxTokens)
                            } else if lane_full {
                                Some(FinishReason::ContextFull)
                            } else {
                                j.next = Some(token);
                                None
                            }
                        };
                        match finish {
                            None => {
                                lanes[i].job = Some(j);
                                None
                            }
                            Some(f) => Some((j, f)),
                        }
                    };
                    if let Some((j, f)) = finish {
                        if let Some(kv) = j.req.kv_file.as_ref().filter(|_| !f.is_interrupted()) {
                            self.save_seq(lanes[i].seq, &lanes[i].tokens, kv);
                        }
                        let key = j.key;
                        let g = finished(j, f);
                        let mut follow = on_done(key, Ok(g))?.into_iter();
                        if let Some((k, req)) = follow.next() {
                            requeue(&mut queue, follow.collect());
                            // The lane that just finished holds the prompt a follow-up usually
                            // extends: it starts there.
                            match self.tokens_of(&req) {
                                Ok(prompt) => {
                                    if let Some((k, g)) = self.admit(
                                        &mut lanes,
                                        i,
                                        k,
                                        req,
                                        prompt,
                                        &mut prefix_charge,
                                        mem,
                                    )? {
                                        requeue(&mut queue, on_done(k, g)?);
                                    }
                                }
                                Err(e) => {
                                    requeue(&mut queue, on_done(k, Err(own(e)?))?);
                                }
                            }
                        }
                    }
                }
            }
        })();
        for l in &lanes {
            // SAFETY: as above; the lanes' cells go, sequence 0 keeps the prefix.
            unsafe { sys::llama_memory_seq_rm(mem, l.seq, -1, -1) };
        }
        tracing::debug!(
            prefill_steps = tally.prefill_steps,
            prefill_tokens = tally.prefill_tokens,
            prefill_runs = tally.prefill_runs,
            prefill_ms = tally.prefill_ms as u64,
            decode_steps = tally.decode_steps,
            decode_tokens = tally.decode_tokens,
            decode_runs = tally.decode_runs,
            decode_ms = tally.decode_ms as u64,
            lane_moves = tally.moves,
            "stream done"
        );
        self.lane_moves += u64::from(tally.moves);
        result
    }

    /// The request checked (sampling, grammar depth) and its prompt tokenised, within a lane.
    fn tokens_of(&self, req: &GenerateRequest) -> Result<Vec<Token>, LlmError> {
        check_request(req)?;
        let p = tokenize(&self.model, &req.prompt, req.add_bos, req.parse_special)?;
        if p.is_empty() {
            return Err(LlmError::EmptyPrompt);
        }
        if p.len() >= self.cfg.n_ctx as usize {
            return Err(LlmError::PromptTooLong {
                prompt_tokens: p.len() as u32,
                context_size: self.cfg.n_ctx,
            });
        }
        Ok(p)
    }

    #[allow(clippy::too_many_arguments)]
    fn admit(
        &mut self,
        lanes: &mut [Lane],
        i: usize,
        key: u64,
        req: GenerateRequest,
        prompt: Vec<Token>,
        prefix_charge: &mut usize,
        mem: sys::llama_memory_t,
    ) -> Result<Option<Ended>, Failure> {
        let t0 = Instant::now();
        let sampler = match self.sampler(&req) {
            Ok(s) => s,
            // Refused before the lane is touched: it stays free.
            Err(e) => return Ok(Some((key, Err(own(e)?)))),
        };
        let stream = StopStream::new(&req.stop);
        let twin_of = (req.max_tokens > 0)
            .then(|| {
                lanes.iter().position(|l| {
                    // Only a prompt still being evaluated: one evaluated in the last decode
                    // but not yet sampled would be sampled before the twin could take it.
                    l.job.as_ref().is_some_and(|j| {
                        j.twin_of.is_none()
                            && j.fed < j.prompt.len()
                            && j.first_ms.is_none()
                            && j.generated == 0
                            && j.prompt == prompt
                    })
                })
            })
            .flatten();
        let cap = prompt.len() - 1;
        let from_lane = common_prefix(&lanes[i].tokens, &prompt).min(cap);
        let from_zero = common_prefix(&self.cached, &prompt).min(cap);
        // A saved conversation (another process's, say) that gives more than the caches.
        let restored = match (&req.kv_file, twin_of) {
            (Some(kv), None) => {
                self.restore_seq(lanes[i].seq, kv, &prompt, from_lane.max(from_zero))
            }
            _ => None,
        };
        let l = &mut lanes[i];
        let reused = if twin_of.is_some() {
            // SAFETY: mem belongs to the live context; the lane is ours.
            unsafe { sys::llama_memory_seq_rm(mem, l.seq, -1, -1) };
            l.tokens.clear();
            0
        } else if let Some(tokens) = restored {
            l.tokens = tokens;
            l.tokens.len()
        } else if from_lane >= from_zero {
            // SAFETY: as above; drops the lane's cells from position `from_lane` on.
            unsafe { sys::llama_memory_seq_rm(mem, l.seq, from_lane as i32, -1) };
            l.tokens.truncate(from_lane);
            from_lane
        } else {
            // SAFETY: as above. Across streams llama.cpp copies a whole sequence (its cells
            // are `self.cached`); the lane then drops the positions it does not share.
            unsafe {
                sys::llama_memory_seq_rm(mem, l.seq, -1, -1);
                sys::llama_memory_seq_cp(mem, 0, l.seq, -1, -1);
                sys::llama_memory_seq_rm(mem, l.seq, from_zero as i32, -1);
            }
            l.tokens = prompt[..from_zero].to_vec();
            let charge = (*prefix_charge).min(from_zero);
            *prefix_charge -= charge;
            from_zero - charge
        };
        let finished_already = req.max_tokens == 0;
        let job = Job {
            key,
            fed: if twin_of.is_some() {
                0
            } else {
                reused.max(l.tokens.len())
            },
            req,
            prompt,
            sampler,
            stream,
            twin_of,
            next: None,
            logits_at: None,
            sampled: Vec::new(),
            generated: 0,
            reused,
            tokenize_ms: ms(t0),
            admitted: Instant::now(),
            first_ms: None,
        };
        if finished_already {
            // Nothing to generate: report at once. Nothing was evaluated for it either.
            l.job = None;
            let mut g = finished(job, FinishReason::MaxTokens);
            g.stats.reused_tokens = g.stats.prompt_tokens;
            g.stats.evaluated_tokens = 0;
            return Ok(Some((key, Ok(g))));
        }
        l.job = Some(job);
        Ok(None)
    }
}

/// Ends every lane's request that is cancelled or past its deadline, with the text it has;
/// a twin still waiting for such a lane's prompt evaluates its own instead. Returns the
/// follow-ups of the ended requests.
fn interrupt(lanes: &mut [Lane], on_done: &mut Report<'_>) -> Result<Vec<Keyed>, Failure> {
    let mut follow = Vec::new();
    for k in 0..lanes.len() {
        let Some(reason) = lanes[k].job.as_ref().and_then(|j| j.req.interrupted()) else {
            continue;
        };
        let j = lanes[k].job.take().expect("checked above");
        for l in lanes.iter_mut() {
            if let Some(t) = l.job.as_mut().filter(|t| t.twin_of == Some(k)) {
                if t.fed < t.prompt.len() {
                    // Its lane was emptied when it became a twin: it starts from nothing.
                    t.twin_of = None;
                    t.fed = 0;
                    t.reused = 0;
                }
            }
        }
        let key = j.key;
        follow.extend(on_done(key, Ok(finished(j, reason)))?);
    }
    Ok(follow)
}

/// What one stream's `llama_decode` calls carried (logged at debug level).
#[derive(Default)]
struct Tally {
    prefill_steps: u32,
    prefill_tokens: usize,
    prefill_runs: usize,
    prefill_ms: f64,
    decode_steps: u32,
    decode_tokens: usize,
    decode_runs: usize,
    decode_ms: f64,
    moves: u32,
}

impl Tally {
    fn count(&mut self, prefill: bool, tokens: usize, runs: usize, ms: f64) {
        if prefill {
            self.prefill_steps += 1;
            self.prefill_tokens += tokens;
            self.prefill_runs += runs;
            self.prefill_ms += ms;
        } else {
            self.decode_steps += 1;
            self.decode_tokens += tokens;
            self.decode_runs += runs;
            self.decode_ms += ms;
        }
    }
}

/// How many runs of consecutive sequence ids a batch's tokens form, in batch order: a lower
/// bound on the micro-batches llama.cpp splits it into.
fn groups(batch: &super::Batch) -> usize {
    let mut runs = 0;
    let mut last: Option<i32> = None;
    for i in 0..batch.len() {
        let seq = batch.seq(i);
        if last != Some(seq) && last.is_none_or(|l| l + 1 != seq) {
            runs += 1;
        }
        last = Some(seq);
    }
    runs
}

/// Moves busy lanes into free lanes below them (the whole KV stream, then the source's cells
/// go) until the busy lanes are the lowest ones. Returns how many moved. With `spare` (sequence
/// 0's tokens), a free lane's cache is kept: it moves to the busy lane's place through sequence
/// 0, which is emptied.
fn compact(
    lanes: &mut [Lane],
    mem: sys::llama_memory_t,
    mut spare: Option<&mut Vec<Token>>,
) -> u32 {
    let mut moves = 0;
    loop {
        let Some(free) = lanes.iter().position(|l| l.job.is_none()) else {
            return moves;
        };
        let Some(busy) = lanes.iter().rposition(|l| l.job.is_some()) else {
            return moves;
        };
        if busy < free {
            return moves;
        }
        let (f, b) = (lanes[free].seq, lanes[busy].seq);
        let keep = match spare.as_deref_mut() {
            Some(zero) if !lanes[free].tokens.is_empty() => {
                // SAFETY: as below; sequence 0 is this context's too. Its prefix is dropped.
                unsafe {
                    sys::llama_memory_seq_rm(mem, 0, -1, -1);
                    sys::llama_memory_seq_cp(mem, f, 0, -1, -1);
                }
                zero.clear();
                true
            }
            _ => false,
        };
        // SAFETY: mem belongs to the live context; both ids are this context's lanes (below
        // n_seq_max). Across streams llama.cpp copies a whole stream into an emptied one.
        unsafe {
            sys::llama_memory_seq_rm(mem, f, -1, -1);
            sys::llama_memory_seq_cp(mem, b, f, -1, -1);
            sys::llama_memory_seq_rm(mem, b, -1, -1);
        }
        let moving = std::mem::take(&mut lanes[busy].tokens);
        let idle = std::mem::replace(&mut lanes[free].tokens, moving);
        if keep {
            // SAFETY: as above.
            unsafe {
                sys::llama_memory_seq_cp(mem, 0, b, -1, -1);
                sys::llama_memory_seq_rm(mem, 0, -1, -1);
            }
            lanes[busy].tokens = idle;
        }
        lanes[free].job = lanes[busy].job.take();
        moves += 1;
    }
}

fn finished(j: Job, finish: FinishReason) -> Generation {
    let end = ms(j.admitted);
    let first = j.first_ms.unwrap_or(end);
    let (rest, text) = j.stream.finish();
    if !rest.is_empty() {
        // Cancellation is moot here: the request has ended.
        let _ = j.req.emit(&rest);
    }
    let reused = j.reused.min(j.prompt.len());
    Generation {
        text,
        finish,
        stats: GenerationStats {
            prompt_tokens: j.prompt.len() as u32,
            reused_tokens: reused as u32,
            evaluated_tokens: (j.prompt.len() - reused) as u32,
            generated_tokens: j.generated,
            tokenize_ms: j.tokenize_ms,
            prefill_ms: first,
            decode_ms: (end - first).max(0.0),
            total_ms: j.tokenize_ms + end,
        },
        prompt_ids: j.prompt,
        tokens: j.sampled,
    }
}
