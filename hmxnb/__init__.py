"""hmxnb: reproduce 'When AI Says It Feels' (HMX-feel) with self-rewarded GRPO, notebook by notebook."""

__version__ = "0.1.0"
