#!/usr/bin/env bash
# Retroformer on GSM8K reflect-and-retry (issue 25): every phase is a `retroformer` or
# `retroformer-train` command; each resumes where it stopped (re-run this script).
#
#   N_TRAIN=80 N_TEST=150 K=4 OUT=runs/retro-gsm8k bash benches/results/retroformer-gsm8k/run.sh
#
# Actor: Qwen2.5-Coder-0.5B-Instruct, sampled (T 0.7, top-p 0.95, seed 1), two trials.
# Train split: one shared first trial, then K collections with sampled reflections
# (T 0.7, seeds 1..K) from the teacher (the actor model itself; K_STUDENT more from the frozen
# SmolLM2-135M, default none: the pilot's were unusable) -> rated records (G2 - G1). The
# student SmolLM2 is trained by SFT on the reflections rated +1, each in the student's own
# chat template (the records' `messages`). Test split: one shared first trial, then the arms:
# none (sampled retry), placebo, frozen SmolLM2, trained SmolLM2, frozen teacher.
set -euo pipefail
BIN=${BIN:-target/release}
R="$BIN/retroformer"
OUT=${OUT:-runs/retro-gsm8k}
N_TRAIN=${N_TRAIN:-80}
N_TEST=${N_TEST:-150}
K=${K:-4}
K_STUDENT=${K_STUDENT:-0}
ACTOR=${ACTOR:-qwen2.5-coder-0.5b-instruct}
STUDENT=${STUDENT:-smollm2-135m-instruct}
TEACHER=${TEACHER:-actor}
STEPS=${STEPS:-}
common=(--actor "$ACTOR" --temperature 0.7 --top-p 0.95 --seed 1 --trials 2 --parallel 8 --threads 2)
refl=(--reflector-temperature 0.7)
time_phase() { local name=$1; shift; /usr/bin/time -f "$name wall_s %e peak_rss_kb %M" -a -o "$OUT/phases.txt" "$@"; }
mkdir -p "$OUT/train" "$OUT/test"

# ---- collection on the train split
time_phase train-first "$R" eval gsm8k-retry "${common[@]}" --split train --limit "$N_TRAIN" --strategy none --out "$OUT/train/first"
for k in $(seq 1 "$K"); do
  time_phase "collect-teacher-$k" "$R" eval gsm8k-retry "${common[@]}" --split train --limit "$N_TRAIN" --strategy reflexion \
    --reflector "$TEACHER" "${refl[@]}" --reflector-seed "$k" \
    --first-trial-from "$OUT/train/first" --out "$OUT/train/teacher-$k"
done
for k in $(seq 1 "$K_STUDENT"); do
  time_phase "collect-student-$k" "$R" eval gsm8k-retry "${common[@]}" --split train --limit "$N_TRAIN" --strategy reflexion \
    --reflector "$STUDENT" "${refl[@]}" --reflector-seed "$k" \
    --first-trial-from "$OUT/train/first" --out "$OUT/train/student-$k"
done
cat "$OUT"/train/*-[0-9]*/records.jsonl > "$OUT/train/records.jsonl"

# ---- SFT of the student on the reflections rated +1
if [ ! -f "$OUT/reflector.gguf" ]; then
  kept=$(grep -c '"rating":1' "$OUT/train/records.jsonl" || true)
  # Three epochs at batch 4, at least 20 steps.
  steps=${STEPS:-$(( (3 * kept + 3) / 4 > 20 ? (3 * kept + 3) / 4 : 20 ))}
  echo "sft: $kept reflections rated +1, $steps steps" | tee -a "$OUT/phases.txt"
  time_phase sft "$BIN/retroformer-train" sft --base "$STUDENT" --data "$OUT/train/records.jsonl" \
    --min-reward 1 --steps "$steps" --warmup $(( steps / 10 )) --batch 4 --lr 2e-4 --out "$OUT/reflector.gguf"
fi

# ---- evaluation on the test split
time_phase test-none "$R" eval gsm8k-retry "${common[@]}" --split test --limit "$N_TEST" --strategy none --out "$OUT/test/a-none"
from=(--first-trial-from "$OUT/test/a-none")
time_phase test-placebo "$R" eval gsm8k-retry "${common[@]}" --split test --limit "$N_TEST" --strategy placebo \
  --reflector "$STUDENT" "${refl[@]}" "${from[@]}" --out "$OUT/test/b-placebo"
time_phase test-frozen "$R" eval gsm8k-retry "${common[@]}" --split test --limit "$N_TEST" --strategy reflexion \
  --reflector "$STUDENT" "${refl[@]}" "${from[@]}" --out "$OUT/test/c-frozen"
time_phase test-trained "$R" eval gsm8k-retry "${common[@]}" --split test --limit "$N_TEST" --strategy reflexion \
  --reflector "$STUDENT" --reflector-adapter "$OUT/reflector.gguf" "${refl[@]}" "${from[@]}" --out "$OUT/test/d-trained"
time_phase test-teacher "$R" eval gsm8k-retry "${common[@]}" --split test --limit "$N_TEST" --strategy reflexion \
  --reflector "$TEACHER" "${refl[@]}" "${from[@]}" --out "$OUT/test/e-teacher"
"$R" eval compare "$OUT"/test/a-none "$OUT"/test/b-placebo "$OUT"/test/c-frozen \
  "$OUT"/test/d-trained "$OUT"/test/e-teacher --out "$OUT/compare"
