"""Pure computation: geometry, fitting, registration, planning, control laws, parsing.

No dora, no I/O, no clock, no global state; randomness is seeded by the caller.
"""
