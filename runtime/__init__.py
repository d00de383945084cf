"""zoo.runtime: nn.Modules for every node kind, backends and their kernels, KV cache,
generation and tokenizers. Knows nothing of YAML or specs: it is configured with plain
dataclasses by the compiler's lowering pass."""
