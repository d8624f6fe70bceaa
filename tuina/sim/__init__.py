"""The simulated massage world: MuJoCo physics served to franky through franky-sim."""
