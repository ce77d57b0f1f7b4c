#!/usr/bin/env python3
"""Summarises whole-run wall times of `retroformer eval` runs into one JSON file.

Usage: wall.py OUT.json NAME=DIR:SECONDS:PEAK_RSS_KB:COMMIT ...

Each DIR is a run folder (`trial-00/*.json`); SECONDS and PEAK_RSS_KB are what `/usr/bin/time -v`
printed for that run. The file records the machine, threads and versions beside the figures.
"""
import glob, json, os, platform, subprocess, sys


def run_figures(d):
    files = sorted(glob.glob(os.path.join(d, "trial-00", "*.json")))
    gen = ev = reused = solved = parsed = 0
    for f in files:
        r = json.load(open(f))
        steps = r.get("steps") or r.get("sequential") or []
        gen += sum(s.get("generated_tokens", 0) for s in steps)
        ev += sum(s.get("evaluated_tokens", 0) for s in steps)
        reused += sum(s.get("reused_tokens", 0) for s in steps)
        solved += bool(r.get("success"))
        parsed += r.get("answer") is not None
    return {"tasks": len(files), "solved": solved, "answered": parsed,
            "generated_tokens": gen, "evaluated_tokens": ev, "reused_tokens": reused}


def cpu():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main():
    out, arms = sys.argv[1], sys.argv[2:]
    rows = {}
    for a in arms:
        name, spec = a.split("=", 1)
        d, secs, rss, commit = spec.split(":")
        f = run_figures(d)
        f.update(wall_s=float(secs), peak_rss_mib=int(rss) / 1024, commit=commit)
        f["generated_per_s"] = f["generated_tokens"] / f["wall_s"]
        cfg = json.load(open(os.path.join(d, "run.json")))
        f["run"] = {k: cfg.get(k) for k in ("actor", "trials", "strategy", "actor_temperature")}
        rows[name] = f
    doc = {
        "format_version": 1,
        "machine": {"cpu": cpu(), "cores": os.cpu_count(), "os": platform.platform()},
        "threads": 2,
        "rustc": subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip(),
        "llama_cpp_sys_2": "0.1.160",
        "arms": rows,
    }
    tmp = out + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(doc, fh, indent=1)
    os.replace(tmp, out)
    names = list(rows)
    for n in names:
        r = rows[n]
        print(f"{n}: {r['wall_s']:.0f} s, {r['tasks']} tasks, {r['solved']} solved, "
              f"{r['generated_per_s']:.1f} generated tok/s, peak RSS {r['peak_rss_mib']:.0f} MiB")
    if len(names) >= 2:
        base = rows[names[-1]]["wall_s"]
        for n in names[:-1]:
            print(f"{n} / {names[-1]}: {rows[n]['wall_s'] / base:.3f}")


if __name__ == "__main__":
    main()
