"""Data tools for code corpora (SCIP, Yang et al. 2023): file embeddings from any zoo model
(embed.py), synthetic corruptions (corrupt.py) and embedding-guided pruning (prune.py)."""

from .corrupt import CONTENT, KINDS, SYNTAX, corrupt
from .embed import Embeddings, embed_corpus, load_embeddings
from .prune import Clusters, Pruned, cluster, scip_prune

__all__ = ["CONTENT", "KINDS", "SYNTAX", "Clusters", "Embeddings", "Pruned", "cluster", "corrupt", "embed_corpus",
           "load_embeddings", "scip_prune"]
