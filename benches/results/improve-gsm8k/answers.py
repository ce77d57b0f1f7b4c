#!/usr/bin/env python3
"""What a trained arm answers differently from the base, problem by problem: reads two greedy
evaluation folders of an `improve` run (`eval/base-greedy`, `eval/HASH-greedy`) and prints the
2x2 table of correct answers, how the answers changed (same answer, another wrong answer,
unparsable to parsable and back), tokens an answer and, with --examples N, N problems the
trained arm solved and the base did not, and N the other way, each with the end of both
responses.

usage: answers.py BASE_DIR ARM_DIR [--examples N]
"""
import glob
import json
import os
import sys


def load(run):
    """problem id -> (answer or None, correct, generated tokens, response) of the first attempt."""
    out = {}
    for path in glob.glob(os.path.join(run, "trial-00", "*.json")):
        with open(path, encoding="utf-8") as f:
            r = json.load(f)
        first = r["sequential"][0]
        out[r["problem_id"]] = (
            first.get("answer"),
            first["reward"] > 0,
            first["generated_tokens"],
            first["response"],
        )
    return out


def share(k, n):
    return f"{k}/{n} ({k / n:.3f})" if n else f"{k}/0"


def main(base_dir, arm_dir, examples):
    base, arm = load(base_dir), load(arm_dir)
    ids = sorted(set(base) & set(arm), key=lambda s: int(s.split("-")[-1]))
    n = len(ids)
    if n == 0:
        sys.exit(f"no problem answered in both {base_dir} and {arm_dir}")
    both = sum(base[i][1] and arm[i][1] for i in ids)
    gained = [i for i in ids if arm[i][1] and not base[i][1]]
    lost = [i for i in ids if base[i][1] and not arm[i][1]]
    print(f"problems in both: {n}")
    print(f"correct: base {share(sum(base[i][1] for i in ids), n)}, "
          f"arm {share(sum(arm[i][1] for i in ids), n)}")
    print(f"both correct {both}, arm only {len(gained)}, base only {len(lost)}, "
          f"neither {n - both - len(gained) - len(lost)}")
    same = sum(base[i][0] is not None and base[i][0] == arm[i][0] for i in ids)
    print(f"same parsed answer: {share(same, n)}")
    for name, run in (("base", base), ("arm", arm)):
        parsable = sum(run[i][0] is not None for i in ids)
        tokens = sum(run[i][2] for i in ids) / n
        print(f"{name}: parsable {share(parsable, n)}, mean tokens {tokens:.1f}")
    became = sum(base[i][0] is None and arm[i][0] is not None for i in ids)
    lost_form = sum(base[i][0] is not None and arm[i][0] is None for i in ids)
    print(f"unparsable -> parsable {became}, parsable -> unparsable {lost_form}")
    for title, picked in (("arm right, base wrong", gained), ("base right, arm wrong", lost)):
        for i in picked[:examples]:
            print(f"\n== {i} ({title}): base {base[i][0]!r}, arm {arm[i][0]!r}")
            print("-- base, last 400 chars:\n" + base[i][3][-400:])
            print("-- arm, last 400 chars:\n" + arm[i][3][-400:])


if __name__ == "__main__":
    args = sys.argv[1:]
    examples = 0
    if "--examples" in args:
        k = args.index("--examples")
        examples = int(args[k + 1])
        del args[k:k + 2]
    if len(args) != 2:
        sys.exit(__doc__)
    main(args[0], args[1], examples)
