"""tuina: vision-guided robotic massage as a dora-rs dataflow."""

__version__ = "0.1.0"
