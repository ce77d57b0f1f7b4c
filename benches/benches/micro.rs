//! Criterion micro-benchmarks of our own hot paths (no model): reflection memory push and its
//! postcard serialisation, prompt assembly, session prefix matching, docstore search, answer
//! normalisation (HotPotQA and MATH), and a sandbox spawn.
//!
//! cargo bench -p retroformer-benches --bench micro [-- FILTER]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use retroformer::agent::Strategy;
use retroformer_core::memory::ReflectionMemory;
use retroformer_core::wire;
use retroformer_envs::hotpotqa::context::context_for;
use retroformer_envs::hotpotqa::react;
use retroformer_envs::hotpotqa::{normalize_answer, Docstore, Explorer, Page};
use retroformer_envs::math::try_math_normalize;
use retroformer_llm::reusable_prefix;

const REFLECTION: &str = "I searched for the wrong entity. The question asks about the magazine \
that was started first; I should have searched both magazines and compared their founding years \
before answering. New plan: Search[Arthur's Magazine], Search[First for Women], compare.";

fn memory(c: &mut Criterion) {
    let mut m = ReflectionMemory::new(3).unwrap();
    c.bench_function("memory push (full, 3 slots)", |b| {
        b.iter(|| m.push(black_box(REFLECTION).to_string()))
    });
    let bytes = wire::encode(&m).unwrap();
    c.bench_function("memory encode (postcard envelope)", |b| {
        b.iter(|| wire::encode(black_box(&m)).unwrap())
    });
    c.bench_function("memory decode (postcard envelope)", |b| {
        b.iter(|| wire::decode::<ReflectionMemory>(black_box(&bytes)).unwrap())
    });
}

fn prompts(c: &mut Criterion) {
    let mut m = ReflectionMemory::new(3).unwrap();
    for _ in 0..3 {
        m.push(REFLECTION.to_string());
    }
    let pad = "\nThought 1: I need to search Arthur's Magazine.\nAction 1: Search[Arthur's Magazine]\nObservation 1: Arthur's Magazine (1844-1846) was an American literary periodical.".repeat(4);
    let words = |s: &str| s.split_whitespace().count();
    c.bench_function("prompt assembly (reflexion context + ReAct prompt)", |b| {
        b.iter(|| {
            let ctx = context_for(
                Strategy::Reflexion,
                "Which magazine was started first?",
                black_box(&m),
                Some(&pad),
                &[],
                &words,
                1000,
            );
            react::prompt(&ctx, "Which magazine was started first?", black_box(&pad))
        })
    });
}

fn prefix(c: &mut Criterion) {
    let cached: Vec<i32> = (0..4000).collect();
    let mut prompt = cached.clone();
    prompt.truncate(3900);
    prompt.extend(5000..5100);
    c.bench_function("session prefix match (4000 cached, 4000 prompt)", |b| {
        b.iter(|| reusable_prefix(black_box(&cached), black_box(&prompt)))
    });
}

fn docstore(c: &mut Criterion) {
    // A synthetic store the size of HotPotQA's global docstore (~1000 pages).
    let pages: Vec<Page> = (0..1000)
        .map(|i| Page {
            title: format!("Page number {i} about topic {}", i % 37),
            sentences: (0..5)
                .map(|k| {
                    format!(
                        " Sentence {k} of page {i} mentions topic {} and more.",
                        i % 37
                    )
                })
                .collect(),
        })
        .collect();
    let store = Docstore::new(pages);
    c.bench_function("docstore search, exact title (1000 pages)", |b| {
        b.iter(|| Explorer::new(&store).search(black_box("Page number 512 about topic 31")))
    });
    c.bench_function("docstore search, similar titles (1000 pages)", |b| {
        b.iter(|| Explorer::new(&store).search(black_box("topic 31 page")))
    });
}

fn normalise(c: &mut Criterion) {
    c.bench_function("HotPotQA answer normalisation", |b| {
        b.iter(|| normalize_answer(black_box("The  Arthur's Magazine, (1844)!")))
    });
    c.bench_function("MATH answer normalisation", |b| {
        b.iter(|| {
            try_math_normalize(black_box(
                "\\left( \\frac{1}{2}, 0.5 \\right) \\text{ units}",
            ))
        })
    });
}

#[cfg(unix)]
fn sandbox(c: &mut Criterion) {
    use retroformer_sandbox::{Sandbox, SandboxConfig};
    let Ok(sb) = Sandbox::new(SandboxConfig::default()) else {
        eprintln!("sandbox spawn: skipped (no python3 or no sandbox on this machine)");
        return;
    };
    let mut g = c.benchmark_group("sandbox");
    g.sample_size(10);
    g.bench_function("sandbox spawn (python3 `pass`, every layer)", |b| {
        b.iter(|| sb.run_python(black_box("pass")))
    });
    g.finish();
}

#[cfg(not(unix))]
fn sandbox(_: &mut Criterion) {}

criterion_group!(benches, memory, prompts, prefix, docstore, normalise, sandbox);
criterion_main!(benches);
