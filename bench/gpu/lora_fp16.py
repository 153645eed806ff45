"""Rewrite LoRA weights in fp16, as the default adapter ships them: half the size, and
what the served model computes in anyway. Usage: python3 lora_fp16.py FILE.safetensors..."""

import sys

from safetensors.torch import load_file, save_file

for path in sys.argv[1:]:
    save_file({k: v.half() for k, v in load_file(path).items()}, path, metadata={"format": "pt"})
