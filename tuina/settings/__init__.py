"""Each node's env keys (``PARAMS``) and the configuration they build, declared once."""
