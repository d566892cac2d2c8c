"""flowrl: offline RL with Decision Transformers on causal Flow-Attention."""

import flowrl.envs  # noqa: F401  registers flowrl's Gymnasium environments

__version__ = "0.1.0"
