"""One thin dora node per module: read config, loop over events, call operators, send Arrow."""
