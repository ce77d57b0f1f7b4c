#!/usr/bin/env python3
"""What an arm does in the household, episode by episode: reads an `improve --env household` run
folder (its `improve.json`, the collections under `round-N/collect/` and the greedy arms under
`eval/`) and prints, for the teacher's collection and for each arm:

- episodes, successes, how the failures ended, actions an episode;
- how far the episodes got (the milestones of the task: the object seen, taken, cleaned /
  heated / cooled, put where the task says, the lamp used), so that an arm that gets further
  without finishing shows apart from one that wanders;
- what the actions are (go, open, take, put, think, ...) and how many did nothing
  (`Nothing happens.`);
- on which CPU its tasks ran (the folder's `sessions.json`: PLAN.md amendment 5);
- against `base`, paired by task: solved by both, by only one, by neither; how many episodes
  are the same actions; the step where they first differ;

and with --examples N, N tasks an arm solved and the base did not, both episodes' actions.
Exploratory: none of this is an endpoint of PLAN.md.

usage: episodes.py RUN_DIR [--examples N]
       episodes.py --folders NAME=DIR ... [--examples N]   (trial folders, the first the base)
"""
import glob
import json
import os
import re
import sys
from collections import Counter

# The task's text after "Your task is to: ", as the generator phrases it (task.rs):
# (type, pattern with the object and the target).
PHRASES = [
    ("puttwo", r"(?:put|find) two (\w+) (?:in|and put them in) (\w+)"),
    ("clean", r"(?:put a clean (\w+) in|clean some (\w+) and put it in) (\w+)"),
    ("heat", r"(?:put a hot (\w+) in|heat some (\w+) and put it in) (\w+)"),
    ("cool", r"(?:put a cool (\w+) in|cool some (\w+) and put it in) (\w+)"),
    ("examine", r"(?:look at (\w+) under the|examine the (\w+) with the) (\w+)"),
    ("put", r"(?:put a (\w+) in|put some (\w+) on|find some (\w+) and put it in) (\w+)"),
]
VERB_OF = {"clean": "clean", "heat": "heat", "cool": "cool"}
MILESTONES = ["seen", "taken", "cleaned", "heated", "cooled", "lamp used holding it", "put in place"]


def task_of(scratchpad):
    """(type, object, target) of an episode, from the task line of its scratchpad."""
    m = re.search(r"Your task is to: (.*)", scratchpad)
    if not m:
        return None
    for kind, pattern in PHRASES:
        t = re.match(pattern, m.group(1))
        if t:
            words = [g for g in t.groups() if g]
            return kind, words[0], words[-1]
    return None


def milestones(kind, obj, target, steps):
    """The milestones an episode reached, in the order a solution reaches them."""
    seen = took = changed = placed = lit = False
    for s in steps:
        o = s["observation"]
        if re.search(rf"\b{obj} \d", o):
            seen = True
        if o.startswith(f"You pick up the {obj} "):
            took = True
        if kind in VERB_OF and o.startswith(f"You {VERB_OF[kind]} the {obj} "):
            changed = True
        if re.match(rf"You put the {obj} \d+ in/on the {target} ", o):
            placed = True
        if kind == "examine" and took and o.startswith("You turn on the "):
            lit = True
    got = {"seen": seen, "taken": took}
    if kind in VERB_OF:
        got[kind + "ed"] = changed
    if kind == "examine":
        got["lamp used holding it"] = lit
    else:
        got["put in place"] = placed
    return got


def load(folder):
    """task id -> list of episodes (dicts) of the folder's first trial."""
    out = {}
    for path in sorted(glob.glob(os.path.join(folder, "trial-00", "*.json"))):
        with open(path, encoding="utf-8") as f:
            r = json.load(f)
        out[r["task_id"]] = r["chains"]
    return out


# Instruction sets every machine of the run has; the others tell two VMs of one CPU model apart
# (the run had two AMD EPYCs, with and without avx_vnni: PLAN.md amendments 6 and 7).
COMMON_SIMD = {"sse3", "ssse3", "sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f",
               "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16"}


def machine_name(machine):
    extra = [s for s in machine["simd"] if s not in COMMON_SIMD]
    return f"{machine['cpu_model']} [{', '.join(extra) or 'without avx_vnni'}]"


def machines(folder, saved):
    """CPU (model and distinguishing instruction sets) -> tasks its processes saved, from the
    folder's sessions.json (each process records how many tasks were saved before it started)."""
    path = os.path.join(folder, "sessions.json")
    if not os.path.exists(path):
        return Counter()
    with open(path, encoding="utf-8") as f:
        sessions = json.load(f)["sessions"]
    out = Counter()
    for k, s in enumerate(sessions):
        end = sessions[k + 1]["saved_before"] if k + 1 < len(sessions) else saved
        out[machine_name(s["machine"])] += max(0, end - s["saved_before"])
    return out


def share(k, n):
    return f"{k}/{n} ({100 * k / n:.0f} %)" if n else "0/0"


def verb(action):
    return action.split(":")[0].split(" ")[0]


def summary(name, tasks, folder):
    eps = [e for chains in tasks.values() for e in chains]
    n = len(eps)
    print(f"## {name}: {len(tasks)} tasks, {n} episodes")
    if not n:
        return
    cpus = machines(folder, len(tasks))
    print("tasks by CPU: " + ", ".join(f"{k} {v}" for k, v in cpus.most_common()))
    wins = sum(e["success"] for e in eps)
    ends = Counter(e["stopped"] for e in eps if not e["success"])
    actions = [len(e["steps"]) for e in eps]
    print(f"successes {share(wins, n)}; failures: "
          + ", ".join(f"{k} {v}" for k, v in sorted(ends.items(), key=lambda x: str(x[0]))))
    print(f"actions an episode {sum(actions) / n:.1f}; generated tokens an episode "
          f"{sum(s['generated_tokens'] for e in eps for s in e['steps']) / n:.0f}")
    reached, applies = Counter(), Counter()
    for e in eps:
        t = task_of(e["scratchpad"])
        for k, v in (milestones(*t, e["steps"]) if t else {}).items():
            reached[k] += v
            applies[k] += 1
    print("milestones reached (of the episodes whose task has it): "
          + ", ".join(f"{k} {share(reached[k], applies[k])}" for k in MILESTONES if applies[k]))
    steps = [s for e in eps for s in e["steps"]]
    verbs = Counter(verb(s["action"]) for s in steps)
    print("actions: " + ", ".join(f"{k} {100 * v / len(steps):.0f} %" for k, v in verbs.most_common()))
    idle = sum(s["observation"] == "Nothing happens." for s in steps)
    print(f"actions that did nothing: {share(idle, len(steps))}")


def paired(name, base, arm, examples):
    ids = sorted(set(base) & set(arm))
    if not ids:
        print(f"## {name} vs base: no task in both")
        return
    b = {i: base[i][0] for i in ids}
    a = {i: arm[i][0] for i in ids}
    both = [i for i in ids if a[i]["success"] and b[i]["success"]]
    only_a = [i for i in ids if a[i]["success"] and not b[i]["success"]]
    only_b = [i for i in ids if b[i]["success"] and not a[i]["success"]]
    print(f"## {name} vs base, {len(ids)} tasks: both solved {len(both)}, only {name} "
          f"{len(only_a)}, only base {len(only_b)}, neither "
          f"{len(ids) - len(both) - len(only_a) - len(only_b)}")
    acts = {i: ([s["action"] for s in b[i]["steps"]], [s["action"] for s in a[i]["steps"]])
            for i in ids}
    same = sum(x == y for x, y in acts.values())
    first = Counter()
    for x, y in acts.values():
        if x != y:
            d = next((k for k, (p, q) in enumerate(zip(x, y)) if p != q), min(len(x), len(y)))
            first["1" if d == 0 else "2-3" if d < 3 else "4-10" if d < 10 else "11+"] += 1
    print(f"same actions in {share(same, len(ids))}; first different action: "
          + ", ".join(f"step {k} {first[k]}" for k in ("1", "2-3", "4-10", "11+") if first[k]))
    for i in only_a[:examples]:
        print(f"### {i}: solved by {name}, not by base")
        x, y = acts[i]
        for k in range(max(len(x), len(y))):
            p = x[k] if k < len(x) else ""
            q = y[k] if k < len(y) else ""
            print(f"  {k + 1:2} {p[:60]:<60} | {q[:60]}")


def arms_of(run):
    with open(os.path.join(run, "improve.json"), encoding="utf-8") as f:
        report = json.load(f)
    folders = []
    for path in sorted(glob.glob(os.path.join(run, "round-*", "collect"))):
        folders.append((os.path.relpath(path, run), path, False))
    for arm in report.get("arms", []):
        if arm.get("greedy"):
            folders.append((arm["name"], os.path.join(run, arm["greedy"]["run"]), True))
    return folders


def main(argv):
    examples = 0
    if "--examples" in argv:
        k = argv.index("--examples")
        examples = int(argv[k + 1])
        argv = argv[:k] + argv[k + 2:]
    if argv[:1] == ["--folders"]:
        folders = [(s.split("=", 1)[0], s.split("=", 1)[1], True) for s in argv[1:]]
    elif len(argv) == 1:
        folders = arms_of(argv[0])
    else:
        sys.exit(__doc__)
    loaded = [(name, load(path), is_arm) for name, path, is_arm in folders]
    for (name, tasks, _), (_, path, _) in zip(loaded, folders):
        summary(name, tasks, path)
    arms = [(n, t) for n, t, is_arm in loaded if is_arm]
    for name, tasks in arms[1:]:
        paired(name, arms[0][1], tasks, examples)


if __name__ == "__main__":
    main(sys.argv[1:])
