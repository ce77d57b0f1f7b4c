#!/bin/bash
# Round 1's own recipe (s1's recorded command) trained to its last step (--patience 0 --keep last),
# then greedy on train problems 101-200 and dev problems 1-100. Resumable: the trainer resumes from
# its checkpoint (every 10 steps), a finished evaluation is skipped. Run from the repository root
# with the release build: bash benches/results/improve-gsm8k/diagnostics/recipe-last.sh
set -e
BIN=${BIN:-$PWD/target/release}
cd benches/results/improve-gsm8k/full
mkdir -p /tmp/diag
zcat ../../../../runtime/envs/data/gsm8k/train.jsonl.gz | sed -n 101,200p > /tmp/diag/train-101-200.jsonl
zcat ../../../../runtime/envs/data/gsm8k/train.jsonl.gz | sed -n 1,100p > /tmp/diag/train-1-100.jsonl
A=../diagnostics/recipe/s1-last.gguf
[ -f $A ] || nice -n 19 $BIN/retroformer-train sft --base qwen2.5-coder-0.5b-instruct \
  --data round-1/train.jsonl --steps 168 --warmup 16 --batch 4 --rank 4 --alpha 8 --lr 0.0002 \
  --max-len 768 --seed 1 --backend native --checkpoint-every 10 --eval-data round-1/heldout.jsonl \
  --eval-every 20 --patience 0 --keep last --quiet --out $A
sha256sum $A
cd ../diagnostics
common="--actor qwen2.5-coder-0.5b-instruct --mode sequential --turns 1 --window 1 --temperature 0 --top-p 0.95 --max-tokens 512 --seed 0 --batch 32"
nice -n 19 $BIN/retroformer eval gsm8k $common --data /tmp/diag/train-101-200.jsonl --adapter recipe/s1-last.gguf --out train-fit/s1-last
nice -n 19 $BIN/retroformer eval gsm8k $common --data /tmp/diag/train-1-100.jsonl --adapter recipe/s1-last.gguf --out dev/s1-last
python3 train_fit.py base s1 placebo recipe-e1 s1-last
