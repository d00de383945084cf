"""Named hostile inputs of the fault families, shared by the tests and bench/hostile.py: folders
of someone's files a save must not touch, impossible save targets, malformed repo ids, and the
ways a server in front of the Hub misbehaves (servers.FaultServer's modes)."""

from __future__ import annotations

#: folders of user files: a save into one must be refused and leave every file as it was
USER_FOLDERS: dict[str, dict[str, str]] = {
    "a text file": {"notes.txt": "my notes"},
    "a nested file": {"src/main.py": "print('hi')"},
    "a hidden file": {".env": "SECRET=1"},
    "weights beside a thesis": {"model.safetensors": "not really", "thesis.tex": "\\begin{document}"},
    "a project's README and config.json": {"README.md": "# my project", "config.json": '{"editor": "vim"}'},
    "a git repository": {".git/HEAD": "ref: refs/heads/main", "code.py": "x = 1"},
}

#: `m.save(WHERE)` run in a folder of user files (see saves.user_workdir; CWD: its absolute path)
CWD_TARGETS = [".", "", "./", "CWD", "..", "sub/.."]

#: save targets no file system takes (a save to one is a ZooError)
IMPOSSIBLE_SAVE_TARGETS = {"a NUL in the path": "a\x00b", "a 300-char name": "x" * 300,
                           "a parent that is a file": "parent-is-a-file/ckpt"}

MALFORMED_REPO_IDS = ["a//b", "/a", "a/", "//", " ", "a b/c", "a/b c", "a/b/c/d/e", "../x", "a/..", "a/../b", "-a/b",
                      "a/b\x00", "a" * 300 + "/b", "ä/b", "a/b?x=1", "a/b#c", "https://huggingface.co/a/b", "a/b@main",
                      "a\\b", "a/b\n", "a/--b", "~no-such-user/x"]

#: FaultServer modes a load must answer with a ZooError ("cut" and "silent" are checked apart)
HUB_FAULTS = ["refused", "status:500", "status:503", "status:429", "status:401", "status:404", "status:400", "garbage",
              "redirect", "cut-api", "bad-json", "flip"]
