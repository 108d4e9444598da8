"""Baseline for src/bench/generate.ts: Hugging Face transformers' generate and forward throughput on the
same Llama-style config (random weights, float32), batch, prompt and new-token counts, and thread count.

  generation tokens/s = batch * new / time of model.generate(greedy, no EOS, exactly `new` tokens)
  forward tokens/s    = batch * (prompt + new) / time of one forward with full logits under no_grad

Run: THP_MEM_ALLOC_ENABLE=1 python scripts/bench/hf_generate.py --threads 2 [--json]
(llmrl's process sets THP_MEM_ALLOC_ENABLE=1 by default; benchGenerate passes its environment on.)
"""
import argparse
import json
import time

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM


def median(xs):
    s = sorted(xs)
    return s[len(s) // 2]


def timed(fn, repeats):
    """Median wall seconds and median process CPU seconds (user + sys) after one warm-up run."""
    fn()  # warm-up
    wall, cpu = [], []
    for _ in range(repeats):
        c, t = time.process_time(), time.perf_counter()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return median(wall), median(cpu)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--kv-heads", type=int, default=8)
    p.add_argument("--intermediate", type=int, default=1376)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--prompt", type=int, default=32)
    p.add_argument("--new", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=a.vocab, hidden_size=a.hidden, intermediate_size=a.intermediate,
                      num_hidden_layers=a.layers, num_attention_heads=a.heads, num_key_value_heads=a.kv_heads,
                      max_position_embeddings=2048, tie_word_embeddings=False, bos_token_id=None,
                      eos_token_id=None, pad_token_id=0, attn_implementation="sdpa")
    model = LlamaForCausalLM(cfg).eval()
    model.generation_config.eos_token_id = None
    prompt = torch.randint(3, a.vocab, (a.batch, a.prompt))
    mask = torch.ones_like(prompt)
    seq = torch.randint(3, a.vocab, (a.batch, a.prompt + a.new))

    def gen():
        out = model.generate(prompt, attention_mask=mask, max_new_tokens=a.new, min_new_tokens=a.new, do_sample=False,
                             pad_token_id=0, eos_token_id=None, top_k=None, top_p=None, temperature=None)
        assert out.shape[1] == a.prompt + a.new

    def fwd():
        with torch.no_grad():
            model(seq)

    g, gc = timed(gen, a.repeats)
    f, fc = timed(fwd, a.repeats)
    r = {
        "generateSeconds": g, "generateTokensPerSec": a.batch * a.new / g,
        "forwardSeconds": f, "forwardTokensPerSec": a.batch * (a.prompt + a.new) / f,
        "generateCpuSeconds": gc, "forwardCpuSeconds": fc,
        "version": transformers.__version__, "torch": torch.__version__, "threads": torch.get_num_threads(),
    }
    print(json.dumps(r) if a.json else json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
