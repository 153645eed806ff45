"""Join the Gemma GGUF pieces (or take the GGUF file given as argument) and convert it
into the polingo model cache exactly as `resolve_base_model("gemma3-270m")` would (the GPU
box lacks the PyPI package)."""

import hashlib
import sys
from pathlib import Path

from core.base_models import ALIASES, _write_marker, default_cache_dir
from core.gguf_import import convert

EXPECTED = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
if len(sys.argv) > 1:
    gguf = Path(sys.argv[1])
else:
    parts = sorted(Path("/tmp/gguf-parts").glob("part*"), key=lambda p: int(p.name[4:]))
    gguf = Path("/tmp/gemma-3-270m-q4_k_m.gguf")
    with open(gguf, "wb") as out:
        for part in parts:
            out.write(part.read_bytes())
digest = hashlib.sha256(gguf.read_bytes()).hexdigest()
if digest != EXPECTED:
    sys.exit(f"GGUF checksum mismatch ({gguf}): {digest}")
alias = ALIASES["gemma3-270m"]
target = default_cache_dir() / alias.name
target.mkdir(parents=True, exist_ok=True)
convert(gguf, alias.recipe, target)
_write_marker(target, kind="alias", alias=alias.name, package=alias.package)
print(f"converted into {target}")
