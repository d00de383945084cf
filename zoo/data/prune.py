"""SCIP pruning (Yang et al. 2023): drop the files that sit in small clusters or far from their
cluster's centroid in embedding space, where synthetic corruptions showed low-quality code lands.

k-means runs on L2-normalized embeddings (so Euclidean k-means ranks by cosine similarity), with
scikit-learn: a CPU wheel that is already a common dependency, deterministic under
`random_state`, and fast enough for the corpora zoo handles (100k files x 192 dims in seconds;
`MiniBatchKMeans` beyond). faiss is the tool at hundreds of millions of vectors or on GPUs, but
its pip wheels are community builds per platform, a heavier dependency for no gain here.

The pruning budget (`prune` x N files) is split: `size_share` of it goes to whole clusters,
smallest first (the last one touched loses its farthest members only), the rest to the
remaining files farthest from their centroid (cosine distance). The paper combines the two
signals; an even split (`size_share=0.5`) is the default.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..runtime.errors import UsageError


@dataclass
class Clusters:
    labels: np.ndarray  # (N,) cluster of each file
    sizes: np.ndarray  # (N,) size of that cluster
    distance: np.ndarray  # (N,) cosine distance to its centroid
    centroids: np.ndarray  # (K, dim), unit length


@dataclass
class Pruned:
    keep: np.ndarray  # (N,) bool
    reason: np.ndarray  # (N,) "", "small cluster" or "far from centroid"
    clusters: Clusters


def normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def cluster(vectors: np.ndarray, k: int, *, seed: int = 0) -> Clusters:
    """Spherical k-means (k-means on unit vectors, centroids renormalized)."""
    try:
        from sklearn.cluster import KMeans
    except ImportError:
        raise UsageError("zoo data prune clusters with scikit-learn, which is not installed: "
                         "pip install 'zoo[data]' (or scikit-learn)") from None
    x = normalize(vectors)
    if not 1 <= k <= len(x):
        raise UsageError(f"--clusters must be between 1 and the number of files ({len(x)}), got {k}")
    km = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(x)
    centroids = normalize(km.cluster_centers_)
    labels = km.labels_.astype(np.int64)
    distance = 1.0 - np.einsum("nd,nd->n", x, centroids[labels])
    sizes = np.bincount(labels, minlength=k)[labels]
    return Clusters(labels, sizes, distance, centroids)


def scip_prune(vectors: np.ndarray, k: int, prune: float = 0.2, *, size_share: float = 0.5,
               seed: int = 0) -> Pruned:
    """Which files to keep (module docstring)."""
    if not 0.0 <= prune < 1.0:
        raise UsageError(f"--prune is the fraction of files to drop, in [0, 1), got {prune}")
    if not 0.0 <= size_share <= 1.0:
        raise UsageError(f"--size-share must be in [0, 1], got {size_share}")
    c = cluster(vectors, k, seed=seed)
    n = len(c.labels)
    budget = int(round(prune * n))
    by_size = int(round(size_share * budget))
    reason = np.array([""] * n, dtype=object)
    counts = np.bincount(c.labels, minlength=len(c.centroids))
    removed = 0
    for cid in np.argsort(counts, kind="stable"):
        if removed >= by_size:
            break
        members = np.flatnonzero(c.labels == cid)
        members = members[np.argsort(-c.distance[members], kind="stable")][:by_size - removed]
        reason[members] = "small cluster"
        removed += len(members)
    rest = np.flatnonzero(reason == "")
    far = rest[np.argsort(-c.distance[rest], kind="stable")][:budget - removed]
    reason[far] = "far from centroid"
    return Pruned(reason == "", reason, c)
