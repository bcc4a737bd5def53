# nbgrader settings for a course that grades conclab's Rust assignments with nbgrader 0.9.
#
# Put this file at the root of the course directory (beside source/, release/,
# submitted/), or append its lines to the course's own nbgrader_config.py. The machine
# that generates, validates and autogrades must have the "Rust (conclab)" kernel:
# `conclab-kernel setup` registers it. See "On nbgrader" in the README.

c = get_config()  # noqa: F821 (nbgrader defines it when it reads this file)

# nbgrader has no stub for Rust. `conclab-kernel release` writes the same one, so the
# student versions of both tools are alike: `todo!()` has type `!`, so it compiles
# wherever the solution stood, and it panics with a clear message if run unanswered.
c.ClearSolutions.code_stub = {"rust": "// YOUR CODE HERE\ntodo!()"}

# A new Rust kernel takes seconds to start and each cell compiles before it runs; the
# first cell also loads the course crate. nbgrader's 30 s per cell is too tight for a
# loaded machine, and a student's endless loop must still end.
c.Execute.timeout = 120
c.Execute.startup_timeout = 180
c.Execute.interrupt_on_timeout = True
