//! What chat and text completions share: running `n` choices per prompt, whole or streamed as
//! server-sent events. The two endpoints differ only in their JSON [`Shape`].

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::Stream;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::AppState;
use retroformer_llm::{ChatMessage, Generation};

use crate::adapters::{Resolved, ACTIVE};
use crate::api::{finish_reason, Sampling};
use crate::engine::{Job, ServedModel};
use crate::error::ApiError;
use crate::ids::{id, now};
use crate::logprobs::{Sent, Wanted};
use crate::tools::Tools;

/// The JSON of one endpoint.
#[derive(Clone, Copy)]
pub enum Shape {
    Chat,
    Text,
}

impl Shape {
    fn object(self, chunk: bool) -> &'static str {
        match (self, chunk) {
            (Shape::Chat, false) => "chat.completion",
            (Shape::Chat, true) => "chat.completion.chunk",
            (Shape::Text, _) => "text_completion",
        }
    }

    /// A whole choice.
    fn choice(self, index: u32, text: &str, finish: Option<&str>) -> Value {
        match self {
            Shape::Chat => json!({"index": index, "finish_reason": finish, "logprobs": null,
                "message": {"role": "assistant", "content": text}}),
            Shape::Text => {
                json!({"index": index, "finish_reason": finish, "logprobs": null, "text": text})
            }
        }
    }

    /// A streamed piece of a choice (`first`: the chat's role comes with it).
    fn delta(self, index: u32, text: &str, first: bool, finish: Option<&str>) -> Value {
        match self {
            Shape::Chat if first => {
                json!({"index": index, "finish_reason": finish, "logprobs": null,
                "delta": {"role": "assistant", "content": text}})
            }
            Shape::Chat => json!({"index": index, "finish_reason": finish, "logprobs": null,
                "delta": {"content": text}}),
            Shape::Text => self.choice(index, text, finish),
        }
    }
}

/// A request ready to run: its prompts (a choice set each) and how to sample them.
pub struct Plan {
    pub model: Arc<ServedModel>,
    pub prompts: Vec<String>,
    pub sampling: Sampling,
    pub shape: Shape,
    /// A chat's messages, captured with the reply when the request has a `session_id`.
    pub transcript: Option<Vec<ChatMessage>>,
    /// A chat's tools: a reply that calls one is answered as `tool_calls`.
    pub tools: Option<Tools>,
}

impl Plan {
    /// Resolves the adapter (once, for every choice) and answers, whole or streamed.
    pub async fn answer(self, engine: AppState) -> Result<Response, ApiError> {
        self.sampling.check_supported()?;
        let chat = matches!(self.shape, Shape::Chat);
        let wanted = Wanted::of(&self.sampling, chat)?;
        let n = self.sampling.n(&engine.limits)?;
        let jobs_max = self.model.lanes().saturating_add(engine.limits.max_queue);
        let asked = self.prompts.len().saturating_mul(n as usize);
        if asked > jobs_max {
            // More than may ever be in flight at once: a 429 would be retried in vain.
            return Err(ApiError::invalid(
                if self.prompts.len() > 1 { "prompt" } else { "n" },
                format!(
                    "{} prompts x n {n} = {asked} completions; this server runs at most {jobs_max} at once",
                    self.prompts.len()
                ),
            ));
        }
        let max_tokens = self.sampling.max_tokens(&engine.limits)?;
        let given = self
            .sampling
            .max_completion_tokens
            .or(self.sampling.max_tokens);
        wanted.check_budget(asked, max_tokens, given.is_some(), chat)?;
        // A deadline past what the clock can hold is no deadline.
        let deadline = engine
            .limits
            .deadline
            .and_then(|d| Instant::now().checked_add(d));
        let grammar = self.sampling.grammar()?;
        let adapter = self.adapter().await?;
        // Each choice copies its prompt and grammar: refuse before copying when the queue has
        // no room for them all (submitting would refuse them anyway), so that what the copies
        // take stays bounded by what may be in flight.
        let in_flight = self.model.in_flight();
        if in_flight.saturating_add(asked) > jobs_max {
            return Err(ApiError::queue_full(self.model.waiting(), 1));
        }
        let mut jobs = Vec::new();
        for (p, prompt) in self.prompts.iter().enumerate() {
            for i in 0..n {
                let mut request = self.sampling.request(
                    prompt.clone(),
                    i,
                    &engine.limits,
                    deadline,
                    grammar.clone(),
                )?;
                request.logprobs = wanted.logprobs;
                if p == 0 && i == 0 {
                    // The conversation continues from the first choice (one lane saves it).
                    request.kv_file = self
                        .sampling
                        .session_id
                        .as_deref()
                        .and_then(|id| self.model.kv_file(id, adapter.as_ref()));
                }
                let index = p as u32 * n + i;
                jobs.push((
                    index,
                    Job {
                        request,
                        adapter: adapter.clone(),
                    },
                ));
            }
        }
        let head = Head {
            id: id(match self.shape {
                Shape::Chat => "chatcmpl",
                Shape::Text => "cmpl",
            }),
            created: now(),
            model: self.model.name.clone(),
            shape: self.shape,
            tools: self.tools.map(Arc::new),
            wanted,
        };
        let capture = match (&self.sampling.session_id, self.transcript) {
            (Some(id), Some(messages)) if engine.capture.is_some() => Some((id.clone(), messages)),
            _ => None,
        };
        if self.sampling.stream {
            let usage = self
                .sampling
                .stream_options
                .as_ref()
                .is_some_and(|o| o.include_usage);
            Ok(stream(engine, self.model, jobs, head, usage, capture)
                .await?
                .into_response())
        } else {
            whole(engine, &self.model, jobs, head, capture).await
        }
    }

    /// The request's adapter; loading one the first time hashes and probes it, off the runtime.
    async fn adapter(&self) -> Result<Option<Resolved>, ApiError> {
        let name = self
            .sampling
            .adapter
            .clone()
            .unwrap_or_else(|| ACTIVE.to_string());
        let m = Arc::clone(&self.model);
        tokio::task::spawn_blocking(move || m.adapters.resolve(m.model.as_ref(), Some(&name)))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
    }
}

/// What every chunk and response repeats.
#[derive(Clone)]
struct Head {
    id: String,
    created: u64,
    model: String,
    shape: Shape,
    tools: Option<Arc<Tools>>,
    wanted: Wanted,
}

impl Head {
    /// The call in a reply, when the request offered tools and the reply makes one.
    fn call(&self, text: &str) -> Option<Value> {
        let call = self.tools.as_ref()?.call_in(text)?;
        Some(call.to_openai(&id("call")))
    }

    /// A whole choice: a tool call, or the text.
    fn choice<'g>(&self, index: u32, g: &'g Generation) -> Sent<'g> {
        let choice = match self.call(&g.text) {
            Some(call) => json!({"index": index, "finish_reason": "tool_calls", "logprobs": null,
                "message": {"role": "assistant", "content": null, "tool_calls": [call]}}),
            None => self
                .shape
                .choice(index, &g.text, Some(finish_reason(&g.finish))),
        };
        self.with_tokens(choice, g)
    }

    /// `choice`, a JSON of `g`, with the logprobs and token ids the request asked for.
    fn with_tokens<'g>(&self, choice: Value, g: &'g Generation) -> Sent<'g> {
        self.wanted
            .sent(choice, g, matches!(self.shape, Shape::Chat))
    }

    fn body<'g>(&self, chunk: bool, choices: Vec<Sent<'g>>) -> Body<'g> {
        Body {
            head: json!({"id": self.id, "object": self.shape.object(chunk),
                "created": self.created, "model": self.model, "system_fingerprint": null}),
            choices,
            usage: None,
        }
    }
}

/// A response or a streamed chunk.
#[derive(serde::Serialize)]
struct Body<'g> {
    #[serde(flatten)]
    head: Value,
    choices: Vec<Sent<'g>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Value>,
}

/// A session id and the chat's messages, for capture.
type Captured = (String, Vec<ChatMessage>);

/// Records the first choice's reply (with its token ids when the model's hash is known) as a
/// turn of the captured session.
fn keep(engine: &AppState, model: &ServedModel, capture: &Option<Captured>, g: &Generation) {
    if let (Some(c), Some((id, messages))) = (&engine.capture, capture) {
        c.turn(id, messages.clone(), &g.text, model.turn_tokens(g));
    }
}

fn usage(prompt: u64, completion: u64) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

/// Runs the choices together (they share the model's batch) and answers them together.
async fn whole(
    engine: AppState,
    model: &Arc<ServedModel>,
    jobs: Vec<(u32, Job)>,
    head: Head,
    capture: Option<Captured>,
) -> Result<Response, ApiError> {
    let (mut choices, mut prompt, mut completion) = (Vec::new(), 0u64, 0u64);
    let runs = jobs.into_iter().map(|(index, job)| {
        let engine = &engine;
        async move { engine.run(model, job, None).await.map(|g| (index, g)) }
    });
    let generations = futures_util::future::try_join_all(runs).await?;
    for (index, g) in &generations {
        if *index == 0 {
            keep(&engine, model, &capture, g);
        }
        prompt += u64::from(g.stats.prompt_tokens);
        completion += u64::from(g.stats.generated_tokens);
        choices.push(head.choice(*index, g));
    }
    let mut body = head.body(false, choices);
    body.usage = Some(usage(prompt, completion));
    Ok(Json(body).into_response())
}

/// What the streaming task sends: an event, or a failure, which is the HTTP answer when nothing
/// was sent before it.
enum Msg {
    Event(Event),
    Fail(ApiError),
}

fn data(body: &Body<'_>) -> Msg {
    // Serialising these cannot fail (string keys, objects flattened); were it to, the client
    // gets an error event rather than a dropped stream.
    let text = serde_json::to_string(body)
        .unwrap_or_else(|e| ApiError::internal(e.to_string()).body().to_string());
    Msg::Event(Event::default().data(text))
}

/// Streams the choices' pieces as they are generated, then `[DONE]`. The response starts only
/// once the first choice has its first piece (or ends): a request refused on the way (queue
/// full, prompt too long, a grammar the model refuses, the deadline) is answered with its HTTP
/// status rather than an error event after a 200. A client that goes away ends the stream,
/// which drops the running generation's future and so cancels it.
async fn stream(
    engine: AppState,
    model: Arc<ServedModel>,
    jobs: Vec<(u32, Job)>,
    head: Head,
    include_usage: bool,
    capture: Option<Captured>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let (out, mut rx) = mpsc::channel::<Msg>(64);
    tokio::spawn(async move {
        let (mut prompt, mut completion) = (0u64, 0u64);
        for (index, job) in jobs {
            match stream_one(&engine, &model, job, index, &head, &out).await {
                Some(Ok(g)) => {
                    prompt += u64::from(g.stats.prompt_tokens);
                    completion += u64::from(g.stats.generated_tokens);
                    if index == 0 {
                        keep(&engine, &model, &capture, &g);
                    }
                }
                Some(Err(e)) => {
                    let _ = out.send(Msg::Fail(e)).await;
                    return;
                }
                None => return,
            }
        }
        if include_usage {
            let mut body = head.body(true, Vec::new());
            body.usage = Some(usage(prompt, completion));
            let _ = out.send(data(&body)).await;
        }
        let _ = out.send(Msg::Event(Event::default().data("[DONE]"))).await;
    });
    let first = match rx.recv().await {
        Some(Msg::Event(e)) => e,
        Some(Msg::Fail(e)) => return Err(e),
        None => {
            return Err(ApiError::internal(
                "the stream ended before its first event",
            ))
        }
    };
    let rest = futures_util::stream::unfold(rx, |mut rx| async move {
        let event = match rx.recv().await? {
            Msg::Event(e) => e,
            Msg::Fail(e) => Event::default().data(e.body().to_string()),
        };
        Some((Ok(event), rx))
    });
    let events = futures_util::stream::once(async move { Ok(first) }).chain(rest);
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// Streams one choice; `None` when the client went away, else its generation or its error.
/// Its last chunk carries the logprobs and token ids the request asked for.
async fn stream_one(
    engine: &AppState,
    model: &Arc<ServedModel>,
    job: Job,
    index: u32,
    head: &Head,
    out: &mpsc::Sender<Msg>,
) -> Option<Result<Generation, ApiError>> {
    let (ptx, mut prx) = mpsc::unbounded_channel::<String>();
    let run = engine.run(model, job, Some(ptx));
    tokio::pin!(run);
    let mut first = true;
    let send = |text: &str, first: bool, finish: Option<&str>| {
        let delta = head.shape.delta(index, text, first, finish);
        data(&head.body(true, vec![Sent::plain(delta)]))
    };
    // With tools, a reply is a call or text only once it is whole: it is held back until then
    // (the client still notices a disconnect through keep-alives).
    let hold = head.tools.is_some();
    let result = loop {
        tokio::select! {
            piece = prx.recv() => match piece {
                Some(_) if hold => {}
                Some(p) => {
                    if out.send(send(&p, first, None)).await.is_err() {
                        return None;
                    }
                    first = false;
                }
                None => break (&mut run).await,
            },
            r = &mut run => break r,
            () = out.closed() => return None,
        }
    };
    while let Ok(p) = prx.try_recv() {
        if !hold {
            out.send(send(&p, first, None)).await.ok()?;
            first = false;
        }
    }
    let g = match result {
        Ok(g) => g,
        Err(e) => return Some(Err(e)),
    };
    let finish = match head.call(&g.text).filter(|_| hold) {
        Some(call) => {
            let delta = json!({"index": index, "finish_reason": null, "logprobs": null, "delta": {
                "role": "assistant", "content": null,
                "tool_calls": [{"index": 0, "id": call["id"], "type": "function", "function": call["function"]}]}});
            out.send(data(&head.body(true, vec![Sent::plain(delta)])))
                .await
                .ok()?;
            first = false;
            "tool_calls"
        }
        None => {
            if hold {
                out.send(send(&g.text, first, None)).await.ok()?;
                first = false;
            }
            finish_reason(&g.finish)
        }
    };
    let last = head.shape.delta(index, "", first, Some(finish));
    let last = head.body(true, vec![head.with_tokens(last, &g)]);
    out.send(data(&last)).await.ok()?;
    Some(Ok(g))
}
