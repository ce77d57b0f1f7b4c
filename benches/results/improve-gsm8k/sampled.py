#!/usr/bin/env python3
"""Two sampled evaluation folders of an `improve` run compared answer by answer: "better" told
from "sharper". Reads `eval/*-sampled/trial-00/*.json` (k answers a problem at temperature
0.7) of arms A and B on the problems both answered (or those listed in --problems FILE, one id
a line) and prints, for each arm, accuracy over all answers, the parsable rate, accuracy among
parsable answers, pass@k, and how many problems have 0..k answers right; then B - A:

- sampled accuracy (over all answers): the difference, a 95 % paired bootstrap interval that
  resamples problems (a problem's k answers are not independent, so answers are not resampled
  one by one), and a two-sided paired sign-flip permutation p on the per-problem differences;
- pass@k: the 2x2 table, the exact McNemar p (as `improve.json` computes it, a cross-check);
- per-problem spread: problems all k answers agree on being right or wrong, for each arm
  (a sharper model has more of them).

Exploratory beside PLAN.md's endpoints (amendment 2 names pass@k; sampled accuracy is
"reported for each"). Seeded: the same folders give the same figures.

usage: sampled.py A_DIR B_DIR [--problems FILE] [--resamples N]
"""
import argparse
import glob
import json
import math
import os
import random
import sys


def load(run):
    """problem id -> list of (correct, parsable) of its sampled answers."""
    out = {}
    for path in glob.glob(os.path.join(run, "trial-00", "*.json")):
        with open(path, encoding="utf-8") as f:
            r = json.load(f)
        out[r["problem_id"]] = [(a["reward"] > 0, a.get("answer") is not None) for a in r["parallel"]]
    return out


def mcnemar_p(b, c):
    """Exact two-sided McNemar p for b and c discordant pairs."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)


def figures(answers):
    flat = [a for v in answers for a in v]
    right = sum(c for c, _ in flat)
    parsable = sum(p for _, p in flat)
    k = max(len(v) for v in answers)
    return {
        "answers": len(flat),
        "accuracy": right / len(flat),
        "parsable": parsable / len(flat),
        "accuracy_parsable": right / parsable if parsable else float("nan"),
        "pass_at_k": sum(any(c for c, _ in v) for v in answers) / len(answers),
        "right_per_problem": [sum(1 for v in answers if sum(c for c, _ in v) == j) for j in range(k + 1)],
    }


def main(a_dir, b_dir, problems_file, resamples):
    a, b = load(a_dir), load(b_dir)
    ids = set(a) & set(b)
    if problems_file:
        with open(problems_file, encoding="utf-8") as f:
            ids &= {l.strip() for l in f if l.strip()}
    ids = sorted(ids, key=lambda s: int(s.split("-")[-1]))
    if not ids:
        sys.exit("no problem answered by both folders")
    if any(len(a[i]) != len(b[i]) for i in ids):
        sys.exit("the folders give problems different numbers of answers")
    n, k = len(ids), len(a[ids[0]])
    print(f"A = {a_dir}\nB = {b_dir}\n{n} problems both answered, {k} answers each")
    fa, fb = figures([a[i] for i in ids]), figures([b[i] for i in ids])
    print(f"{'':>22} {'A':>8} {'B':>8}")
    for key in ["accuracy", "parsable", "accuracy_parsable", "pass_at_k"]:
        print(f"{key:>22} {fa[key]:>8.4f} {fb[key]:>8.4f}")
    print(f"{'problems with j right':>22} A {fa['right_per_problem']}  B {fb['right_per_problem']}  (j = 0..{k})")
    for name, f in [("A", fa), ("B", fb)]:
        agree = f["right_per_problem"][0] + f["right_per_problem"][-1]
        print(f"{'':>22} {name}: all {k} answers agree on {agree} of {n} problems")

    # Sampled accuracy, per problem: the share of its answers right.
    d = [sum(c for c, _ in b[i]) / k - sum(c for c, _ in a[i]) / k for i in ids]
    diff = sum(d) / n
    rng = random.Random(0)
    boot = sorted(sum(d[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    lo, hi = boot[int(0.025 * resamples)], boot[int(0.975 * resamples) - 1]
    flips = 0
    for _ in range(resamples):
        s = sum(x if rng.random() < 0.5 else -x for x in d) / n
        flips += abs(s) >= abs(diff) - 1e-12
    p_flip = (flips + 1) / (resamples + 1)
    print(
        f"\nsampled accuracy B - A: {100 * diff:+.2f} points, 95 % paired bootstrap over problems "
        f"{100 * lo:+.2f} to {100 * hi:+.2f} ({resamples} resamples), sign-flip p = {p_flip:.4f}"
    )

    only_b = sum(any(c for c, _ in b[i]) and not any(c for c, _ in a[i]) for i in ids)
    only_a = sum(any(c for c, _ in a[i]) and not any(c for c, _ in b[i]) for i in ids)
    print(
        f"pass@{k} B - A: {100 * (only_b - only_a) / n:+.1f} points, only B {only_b} / only A {only_a}, "
        f"exact McNemar p = {mcnemar_p(only_b, only_a):.4f}"
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a_dir")
    ap.add_argument("b_dir")
    ap.add_argument("--problems", help="a file of problem ids, one a line")
    ap.add_argument("--resamples", type=int, default=10000)
    args = ap.parse_args()
    if args.resamples < 100:
        ap.error("--resamples must be at least 100")
    main(args.a_dir, args.b_dir, args.problems, args.resamples)
