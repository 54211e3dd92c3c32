"""Two NCCL ranks on one GPU: a real NCCL failure for `tpfit explain` tests (run on the device with torchrun)."""
import os

import torch
import torch.distributed as dist

dist.init_process_group("nccl")
torch.cuda.set_device(0)  # both ranks on GPU 0: NCCL refuses ("Duplicate GPU detected")
t = torch.ones(1, device="cuda")
dist.all_reduce(t)
print("rank", os.environ.get("RANK"), t.item())
