"""Checkpoint I/O in one place: the zoo folder's document (zoo.yaml), its integrity manifest,
atomic folder writes, safetensors reading and writing, and the model card. Formats (key maps,
foreign layouts, writers) build on this package; it knows nothing of them."""

from .atomic import atomic_folder
from .document import (
                       CANONICAL,
                       SPEC_FILE,
                       CheckpointError,
                       Document,
                       load_document,
                       read_document,
                       read_spec,
                       spec_document,
                       write_spec,
                       written_fingerprint,
)
from .integrity import file_digests, hash_files, manifest, verify_files
from .tensors import (
                       INDEX_FILE,
                       KeyReport,
                       SafetensorsSource,
                       compare_keys,
                       parse_size,
                       read_header,
                       save_sharded,
)

__all__ = ["CANONICAL", "INDEX_FILE", "SPEC_FILE", "CheckpointError", "Document", "KeyReport", "load_document",
           "SafetensorsSource", "atomic_folder", "compare_keys", "file_digests", "hash_files", "manifest", "parse_size",
           "read_document", "read_header", "read_spec", "save_sharded", "spec_document", "verify_files", "write_spec",
           "written_fingerprint"]
