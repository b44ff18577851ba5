"""`kiban robot`: a safety-supervised control stack for an industrial arm cell, simulated in MuJoCo.

    observe ─▶ policy / skill ─▶ supervise (safety/, pure) ─▶ send ─▶ Robot (MuJoCo sim | hardware bridge)

`safety/` imports nothing from policies, skills or drivers; only `Verdict.command_sent` ever
reaches a robot.
"""
