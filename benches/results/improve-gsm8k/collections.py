#!/usr/bin/env python3
"""Two collections of an `improve` run side by side (exploratory): reads `round-A/collect` and
`round-B/collect` (the same problems, the same number of sampled chains at the same
temperature, drawn by a different actor) and prints, for the dev problems and the train
problems apart, the share of correct and of parsable samples, tokens a sample, pass@k (a
problem solved by any of its k samples) and the paired comparison of pass@k: the discordant
problems, the exact McNemar p and the exact conditional 95 % interval of the difference
(Clopper-Pearson on b / (b + c), scaled by (b + c) / n: the interval consistent with the test).

Only problems both collections hold are compared. Train problems were trained on by the later
round's adapter when the earlier round solved them, so their difference is not evidence of
generalisation; the dev problems were never trained on.

usage: collections.py RUN_DIR [A B] [--dev N]   (rounds, default 1 2; the first N problems
are the dev problems, as the run's --dev, default 100)
"""
import glob
import json
import math
import os
import sys


def load(collect_dir):
    """problem id -> list of (parsable, correct, generated tokens), one a chain's first attempt."""
    out = {}
    for path in glob.glob(os.path.join(collect_dir, "trial-00", "*.json")):
        with open(path, encoding="utf-8") as f:
            r = json.load(f)
        out[r["problem_id"]] = [
            (c[0].get("answer") is not None, c[0]["reward"] > 0, c[0]["generated_tokens"])
            for c in r["chains"]
        ]
    if not out:
        sys.exit(f"collections.py: no collected problems under {collect_dir}/trial-00")
    return out


def binom_cdf(k, n, p):
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))


def mcnemar_p(b, c):
    n = b + c
    if n == 0:
        return 1.0
    return min(1.0, 2 * binom_cdf(min(b, c), n, 0.5))


def clopper_pearson(k, n, alpha=0.05):
    """Exact interval for a binomial proportion, by bisection on the binomial tails."""

    def solve(f):
        lo, hi = 0.0, 1.0
        for _ in range(100):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if f(mid) else (lo, mid)
        return (lo + hi) / 2

    lower = 0.0 if k == 0 else solve(lambda p: 1 - binom_cdf(k - 1, n, p) < alpha / 2)
    upper = 1.0 if k == n else solve(lambda p: binom_cdf(k, n, p) > alpha / 2)
    return lower, upper


def summary(name, a, b, ids):
    n = len(ids)
    if n == 0:
        return
    k = len(a[ids[0]])
    print(f"{name}: {n} problems, {k} samples each")
    for label, col in (("A", a), ("B", b)):
        samples = [s for i in ids for s in col[i]]
        correct = sum(s[1] for s in samples)
        parsable = sum(s[0] for s in samples)
        tokens = sum(s[2] for s in samples) / len(samples)
        solved = sum(any(s[1] for s in col[i]) for i in ids)
        print(
            f"  {label}: correct samples {correct}/{len(samples)} ({correct / len(samples):.3f}),"
            f" parsable {parsable / len(samples):.3f}, tokens a sample {tokens:.0f},"
            f" pass@{k} {solved}/{n} ({solved / n:.3f})"
        )
    only_b = sum(any(s[1] for s in b[i]) and not any(s[1] for s in a[i]) for i in ids)
    only_a = sum(any(s[1] for s in a[i]) and not any(s[1] for s in b[i]) for i in ids)
    d = only_b + only_a
    diff = (only_b - only_a) / n
    lo, hi = clopper_pearson(only_b, d) if d else (0.5, 0.5)
    print(
        f"  pass@{k} B - A: {100 * diff:+.1f} points, exact 95 % interval"
        f" {100 * (2 * lo - 1) * d / n:+.1f} to {100 * (2 * hi - 1) * d / n:+.1f};"
        f" only B {only_b}, only A {only_a}, exact McNemar p = {mcnemar_p(only_b, only_a):.3g}"
    )


def main(run, ra, rb, dev):
    a = load(os.path.join(run, f"round-{ra}", "collect"))
    b = load(os.path.join(run, f"round-{rb}", "collect"))
    ids = sorted(set(a) & set(b), key=lambda s: int(s.split("-")[-1]))
    print(f"A = round {ra}'s collection, B = round {rb}'s ({run})")
    # Problem ids count from 1 over dev and train problems alike (`train-N`, the dataset's split).
    is_dev = [int(i.split("-")[-1]) <= dev for i in ids]
    summary("dev (never trained on)", a, b, [i for i, d in zip(ids, is_dev) if d])
    summary("train (trained on: not held out)", a, b, [i for i, d in zip(ids, is_dev) if not d])


if __name__ == "__main__":
    args = sys.argv[1:]
    dev = 100
    if "--dev" in args:
        i = args.index("--dev")
        if i + 1 >= len(args) or not args[i + 1].isdigit():
            sys.exit("--dev needs a number of problems\n" + __doc__)
        dev = int(args[i + 1])
        del args[i : i + 2]
    if len(args) not in (1, 3):
        sys.exit(__doc__)
    main(args[0], *(args[1:] if len(args) == 3 else ("1", "2")), dev)
