#!/usr/bin/env python3
"""Did round 1's adapters learn the problems they were trained on?

Greedy answers of the base, `s1` and `placebo` on train problems 101-200 (collected in round
1; `train-fit/ARM/`), next to what round 1's collection found on each (4 sampled answers) and
what each adapter was trained on. Usage: python3 train_fit.py [ARM ...] (default: base s1
placebo; each a folder under train-fit/, the first the baseline of the McNemar tests).
"""
import json
import math
import sys
from pathlib import Path

diag = Path(__file__).parent / "train-fit"
full = Path(__file__).parent.parent / "full"
names = sys.argv[1:] or ["base", "s1", "placebo"]
ids = [f"train-{i}" for i in range(101, 201)]


def greedy(arm):
    """Problem id -> 1 if the arm's greedy answer is right (files are DATA-STEM-N.json)."""
    out = {}
    for i, pid in enumerate(ids, start=1):
        f = diag / arm / "trial-00" / f"train-101-200-{i}.json"
        r = json.loads(f.read_text())
        out[pid] = int(r["sequential"][0]["reward"] >= 1.0)
    return out


def trained(file):
    """Problem id -> (examples, correct examples) in an adapter's training set."""
    n = {}
    for line in (full / "round-1" / file).read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            a, c = n.get(r["problem_id"], (0, 0))
            n[r["problem_id"]] = (a + 1, c + int(r["reward"] >= 1.0))
    return n


def mcnemar(b, c):
    """Exact two-sided McNemar p on b and c discordant pairs."""
    n, k = b + c, min(b, c)
    if n == 0:
        return 1.0
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)


collected = {}
for pid in ids:
    c = json.loads((full / "round-1" / "collect" / "trial-00" / f"{pid}.json").read_text())
    collected[pid] = sum(a["reward"] >= 1.0 for chain in c["chains"] for a in chain)
arms = {a: greedy(a) for a in names}
s1_set, placebo_set = trained("selected.jsonl"), trained("placebo-selected.jsonl")

in_s1 = [p for p in ids if p in s1_set]
groups = {
    "all 100": ids,
    "in s1's training set (>= 1 of 4 samples right)": in_s1,
    "not in it (0 of 4 right)": [p for p in ids if p not in s1_set],
}
print(f"{'problems':<50} {'n':>3}  " + "  ".join(f"{a:>7}" for a in arms))
for name, ps in groups.items():
    row = "  ".join(f"{sum(arms[a][p] for p in ps):>3}/{len(ps):<3}" for a in arms)
    print(f"{name:<50} {len(ps):>3}  {row}")
first = names[0]
for a in names[1:]:
    for label, ps in [("all 100", ids), (f"the {len(in_s1)} trained on", in_s1)]:
        b = sum(arms[a][p] and not arms[first][p] for p in ps)
        c = sum(arms[first][p] and not arms[a][p] for p in ps)
        print(f"{a} - {first} on {label}: {b} gained, {c} lost, exact McNemar p = {mcnemar(b, c):.3f}")
print(f"placebo's training set covers {sum(p in placebo_set for p in ids)} of these problems "
      f"({sum(v[1] for k, v in placebo_set.items() if k in ids)} correct examples of "
      f"{sum(v[0] for k, v in placebo_set.items() if k in ids)})")
print("sampled accuracy in collection (4 answers each): "
      f"{sum(collected.values())}/{4 * len(ids)}")
