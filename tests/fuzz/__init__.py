"""Hostile input and faults (issue "Hostile input and faults"): the fuzz tests, and what they
share with bench/hostile.py.

- isolation.py: run a case in a forked child under time and memory limits; its Outcome.
- cli.py: run the `zoo` CLI in-process; its Outcome by the CLI's contract.
- builders.py: tiny models, spec texts, checkpoint folders in each format.
- editors.py: mutate checkpoint folders as an attacker would (zoo.yaml re-fingerprinted).
- probes.py: files opened outside a folder, warnings on load.
- saves.py: faults while saving (killed, concurrent, full disk) and their checks.
- servers.py: misbehaving servers in front of the loopback Hub, the repos the Hub cases read.
- spec_cases.py, checkpoint_cases.py, generation_cases.py, fault_cases.py: the named hostile
  inputs.
- generators.py: seeded random generators; strategies.py: the hypothesis strategies over them.
"""
