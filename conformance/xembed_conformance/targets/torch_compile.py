"""`torch.compile`d torch.nn.functional.embedding / embedding_bag as a conformance target.

    python -m xembed_conformance --impl xembed_conformance.targets.torch_compile --backend torch

Compiled with the default inductor backend and ``dynamic=None`` (torch's default: recompile on a
new shape, then mark dynamic).  The recompile limit is raised so that every example really runs
compiled code instead of silently falling back to eager after 8 recompilations.
"""

import torch
import torch._dynamo
import torch.nn.functional as F  # noqa: N812 - torch's customary name

for _name in ("recompile_limit", "cache_size_limit", "accumulated_recompile_limit", "accumulated_cache_size_limit"):
    if hasattr(torch._dynamo.config, _name):
        setattr(torch._dynamo.config, _name, 100_000)

embedding = torch.compile(F.embedding)
embedding_bag = torch.compile(F.embedding_bag)
