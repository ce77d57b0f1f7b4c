#!/usr/bin/env python3
"""Which machine answered each problem of an evaluation folder, from git history, and the
paired comparison of two folders restricted to the problems both answered on one machine
(PLAN.md amendment 5's check).

A run resumed on another machine keeps writing into the same folder; `sessions.json` records
each session's machine but not which problem files it wrote. Each session's files are
committed before the run moves to another machine, so the commit that first holds a problem's
file tells its machine: the machine of the sessions that commit added to `sessions.json` (or,
if it added none, of the folder's last session). Files committed before the folder had a
`sessions.json` are `unrecorded` unless --unrecorded-as names their machine (`first-recorded`:
the machine of the folder's first recorded session).

usage:
  machines.py DIR...                       problems per machine, for each folder
  machines.py --compare A B --out TMP [--unrecorded-as LABEL] [--retroformer BIN]
      copies the same-machine problems of A and B into TMP/a and TMP/b and runs
      `retroformer eval compare TMP/a TMP/b --out TMP/compare`.
Run from the repository root, with folders given relative to it.
"""
import json
import os
import shutil
import subprocess
import sys


def git(*args):
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True).stdout


def machine_key(m):
    """Two sessions ran the same kernels when model, arch and SIMD list agree (`same_kernels`)."""
    return f"{m['cpu_model']} ({m['arch']}; {' '.join(sorted(m['simd']))})"


def sessions_at(rev, folder):
    try:
        text = git("show", f"{rev}:{folder}/sessions.json")
    except subprocess.CalledProcessError:
        return None
    return [(s["started_unix"], machine_key(s["machine"])) for s in json.loads(text)["sessions"]]


def files_at(rev, folder):
    """(file name, blob id) of the problem files: a file written again is a new blob."""
    try:
        lines = git("ls-tree", f"{rev}:{folder}/trial-00").splitlines()
    except subprocess.CalledProcessError:
        return set()
    entries = (line.split("\t", 1) for line in lines)
    return {(name, meta.split()[2]) for meta, name in entries if name.endswith(".json")}


def problem_machines(folder, unrecorded_as=None):
    """problem file name -> machine key, for the files of `folder` at HEAD (a file committed
    again with other content takes the machine of that commit)."""
    revs = git("log", "--reverse", "--format=%H", "--", f"{folder}/trial-00").split()
    if unrecorded_as == "first-recorded":
        recorded = sessions_at("HEAD", folder)
        unrecorded_as = recorded[0][1] if recorded else None
    seen_files, seen_sessions, out = set(), set(), {}
    for rev in revs:
        files, sessions = files_at(rev, folder), sessions_at(rev, folder)
        new = files - seen_files
        if sessions is None:
            label = unrecorded_as or "unrecorded"
        else:
            added = {m for (t, m) in sessions if t not in seen_sessions}
            if not added and sessions:
                added = {sessions[-1][1]}
            label = added.pop() if len(added) == 1 else "ambiguous"
            seen_sessions |= {t for (t, _) in sessions}
        for f in new:
            out.setdefault(f, label)
        seen_files |= files
    return {name: out[(name, blob)] for (name, blob) in files_at("HEAD", folder)}


def counts(folder, unrecorded_as):
    tally = {}
    for m in problem_machines(folder, unrecorded_as).values():
        tally[m] = tally.get(m, 0) + 1
    print(folder)
    for m, n in sorted(tally.items(), key=lambda kv: -kv[1]):
        print(f"  {n:4d}  {m}")


def subset(src, dst, names):
    os.makedirs(os.path.join(dst, "trial-00"))
    shutil.copy(os.path.join(src, "run.json"), dst)
    for n in names:
        shutil.copy(os.path.join(src, "trial-00", n), os.path.join(dst, "trial-00", n))


def compare(a, b, out, unrecorded_as, binary):
    ma, mb = problem_machines(a, unrecorded_as), problem_machines(b, unrecorded_as)
    both = sorted(n for n in set(ma) & set(mb) if ma[n] == mb[n] and "unrecorded" not in ma[n]
                  and ma[n] != "ambiguous")
    print(f"{len(set(ma) & set(mb))} problems in both; {len(both)} answered on one machine")
    if os.path.exists(out):
        sys.exit(f"--out {out} exists; give a new folder")
    subset(a, os.path.join(out, "a"), both)
    subset(b, os.path.join(out, "b"), both)
    subprocess.run([binary, "eval", "compare", os.path.join(out, "a"), os.path.join(out, "b"),
                    "--out", os.path.join(out, "compare")], check=True)


def main(argv):
    def flag(name, default=None):
        if name in argv:
            i = argv.index(name)
            if i + 1 >= len(argv):
                sys.exit(f"{name} needs a value")
            value = argv[i + 1]
            del argv[i:i + 2]
            return value
        return default

    unrecorded_as = flag("--unrecorded-as")
    binary = flag("--retroformer", "retroformer")
    out = flag("--out")
    if argv and argv[0] == "--compare":
        if len(argv) != 3 or out is None:
            sys.exit(__doc__)
        compare(argv[1].rstrip("/"), argv[2].rstrip("/"), out, unrecorded_as, binary)
    elif argv and not argv[0].startswith("-"):
        for d in argv:
            counts(d.rstrip("/"), unrecorded_as)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
