"""flowrl: offline RL with Decision Transformers on causal Flow-Attention."""

__version__ = "0.1.0"
