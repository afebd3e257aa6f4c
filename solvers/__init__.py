"""The built-in solvers, each written exactly as a team writes its own (see trial.Solver).

They are found by the names this package's metadata offers in the `trial.solvers`
entry-point group (setup.cfg), never by importing this package.
"""
