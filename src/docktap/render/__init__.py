"""Renderers: pure functions that turn a loaded capture into text or data for people and tools.

What they share is defined once: `text` says how sizes, durations, times and ids are written
and fits text to a width; `kind` says which exchanges stayed open (hijacks, streams, long polls);
`refusal` reads what the daemon said went wrong.
"""
