"""Recording: what the relay forwards, turned into a capture by a child process.

The parts, one module each: `wire` (the messages between the relay and the child, and the
child's settings), `link` (the relay's side: a tap that ships messages to the child, with its
pipe-or-spool policy), `spool` (the backlog on disk), `launch` (starting the child: a fork or
a fresh interpreter), `child` (the child's main), `engine` (observer, encoder and writer driven
by tap calls) and `session` (`record(...)`: all of it around a relay, as a context manager).
docs/architecture.md draws how they fit.

This package file imports nothing, so that the child loads only what it runs.
"""
