#!/usr/bin/env python3
"""Writes a run folder's per-task outcomes as one small JSONL file (task_id, trial, success and,
where the result has them, the answer, the gold answer and the reflection written after the
trial), so that the paired statistics in compare.json can be checked without the full
trajectories, which stay on the machine that ran them.

usage: outcomes.py RUN_DIR OUT.jsonl
"""
import glob
import json
import os
import sys


def main(run, out):
    rows = []
    for path in sorted(glob.glob(os.path.join(run, "trial-*", "*.json"))):
        with open(path, encoding="utf-8") as f:
            r = json.load(f)
        row = {"task_id": r["task_id"], "trial": r.get("trial")}
        row["success"] = bool(r.get("success", r.get("passed", False)))
        for key in ("answer", "gold", "reflection"):
            if r.get(key) is not None:
                row[key] = r[key]
        rows.append(row)
    rows.sort(key=lambda x: (x["trial"], x["task_id"]))
    tmp = out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps({"format_version": 1, "kind": "retroformer-outcomes", "run": run}) + "\n")
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, out)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
