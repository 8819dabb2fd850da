"""Kernel packages, one per algorithm: delta_rule, gla, retention, attention, conv1d.

Each exposes a public function (validated, dispatching on `backend`) and a
`reference.py` spec in plain PyTorch. See each package's README.md for the math."""
