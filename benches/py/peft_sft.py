"""Reference for `cargo bench --bench train`: one LoRA SFT configuration with PyTorch + PEFT.

Loads the same GGUF through transformers (`gguf_file=`, dequantised to f32), attaches LoRA
(rank, alpha, all seven projections, no dropout), and times AdamW steps (each over `--batch` copies of one sequence, gradients accumulated) on
one sequence of
exactly `--seq` token ids read from `--tokens` (the ids our tokenizer produced, so both sides
train on the same tokens). The learning rate follows our trainer's timing schedule: cosine from
`--lr` to 0 over `--steps`, no warm-up. Prints one JSON object: per-step seconds, the loss of
each step and the library versions.
Peak RSS is measured by the caller (wait4 on this process).
"""
import argparse, json, math, os, sys, time

p = argparse.ArgumentParser()
p.add_argument("--gguf", required=True)
p.add_argument("--tokens", required=True)
p.add_argument("--steps", type=int, default=4)
p.add_argument("--rank", type=int, default=8)
p.add_argument("--alpha", type=float, default=16.0)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--lr", type=float, default=2e-4)
p.add_argument("--batch", type=int, default=1, help="sequences per step, gradients accumulated")
a = p.parse_args()

import torch
import peft
import transformers
from transformers import AutoModelForCausalLM
from peft import LoraConfig, get_peft_model

torch.set_num_threads(a.threads)
torch.manual_seed(0)
d, f = os.path.split(os.path.abspath(a.gguf))
model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, torch_dtype=torch.float32)
cfg = LoraConfig(r=a.rank, lora_alpha=a.alpha, lora_dropout=0.0,
                 target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
model = get_peft_model(model, cfg)
model.train()
ids = torch.tensor([json.load(open(a.tokens))], dtype=torch.long)
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=a.lr, weight_decay=0.0)
secs, losses = [], []
for step in range(a.steps):
    # Our trainer's lr_at with no warm-up: lr * (1 + cos(pi * step / steps)) / 2.
    for g in opt.param_groups:
        g["lr"] = a.lr * 0.5 * (1.0 + math.cos(math.pi * step / a.steps))
    t = time.perf_counter()
    loss = 0.0
    for _ in range(a.batch):
        out = model(input_ids=ids, labels=ids)
        (out.loss / a.batch).backward()
        loss += out.loss.item() / a.batch
    opt.step()
    opt.zero_grad(set_to_none=True)
    secs.append(time.perf_counter() - t)
    losses.append(loss)
versions = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}
print(json.dumps({"versions": versions, "seq": ids.shape[1], "seconds": secs, "losses": losses}))
