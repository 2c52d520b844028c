"""The long-context memory model: a Mamba-2 checkpoint whose fixed-size recurrent state is what a session has read.

`mamba.py` loads a checkpoint and reads text into a `MemoryState` (`state.py`) chunk by chunk; `errors.py` holds
the errors that need no torch to name. Importing this package imports nothing heavy; its modules import torch.
"""
